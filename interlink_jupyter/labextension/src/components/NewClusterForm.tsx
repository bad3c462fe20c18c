import React, { useEffect, useState } from 'react';

import { ApiError, errorText } from '../errors';
import {
  ClusterMode,
  ConfigAnswer,
  CreateClusterRequest,
  NodeInfo
} from '../types';

type Field =
  | 'name'
  | 'mode'
  | 'node'
  | 'image'
  | 'cpu'
  | 'memory'
  | 'processes'
  | 'workers';

type Values = Record<Field, string>;

const BLANK: Values = {
  name: '',
  mode: 'kubernetes',
  node: '',
  image: '',
  cpu: '',
  memory: '',
  processes: '',
  workers: ''
};

/** Form values from `GET config` defaults (unknown fields stay blank). */
export function valuesFromConfig(config: ConfigAnswer | null): Values {
  const d = config?.defaults ?? {};
  const text = (value: unknown): string =>
    value === null || value === undefined ? '' : String(value);
  return {
    ...BLANK,
    mode: d.mode === 'direct' ? 'direct' : 'kubernetes',
    node: text(d.node),
    image: text(d.image),
    cpu: text(d.cpu),
    memory: text(d.memory),
    processes: text(d.processes)
  };
}

/**
 * The POST body: blank fields are left out (the server then uses the user's
 * dask config); counts are integers, a plain-number cpu is sent as a number.
 */
export function requestFromValues(
  values: Values
): CreateClusterRequest | { error: string; field: Field } {
  const body: CreateClusterRequest = { mode: values.mode as ClusterMode };
  const trimmed = (field: Field): string => values[field].trim();
  // a node applies to Kubernetes mode only: direct mode goes straight to the edge
  const fields =
    values.mode === 'direct'
      ? (['name', 'image', 'memory'] as const)
      : (['name', 'node', 'image', 'memory'] as const);
  for (const field of fields) {
    if (trimmed(field)) {
      body[field] = trimmed(field);
    }
  }
  if (trimmed('cpu')) {
    const cpu = trimmed('cpu');
    body.cpu = /^\d+(\.\d+)?$/.test(cpu) ? Number(cpu) : cpu;
  }
  for (const field of ['processes', 'workers'] as const) {
    const value = trimmed(field);
    if (value) {
      if (!/^\d+$/.test(value)) {
        return { error: `${field} must be a whole number.`, field };
      }
      body[field] = Number(value);
    }
  }
  return body;
}

/** The collapsible "New cluster" form. */
export function NewClusterForm(props: {
  config: ConfigAnswer | null;
  configError: string;
  nodes: NodeInfo[] | null;
  onCreate: (request: CreateClusterRequest) => Promise<string>;
}): JSX.Element {
  const { config, configError, nodes, onCreate } = props;
  const [open, setOpen] = useState(false);
  const [values, setValues] = useState<Values>(() => valuesFromConfig(config));
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<{ message: string; field: string | null }>(
    { message: '', field: null }
  );
  const [created, setCreated] = useState('');

  // Take the server's defaults when they arrive, unless the user typed already.
  useEffect(() => {
    if (!touched) {
      setValues(valuesFromConfig(config));
    }
  }, [config]);

  const set =
    (field: Field) =>
    (event: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>): void => {
      setTouched(true);
      setValues({ ...values, [field]: event.target.value });
    };

  const onSubmit = async (event: React.FormEvent): Promise<void> => {
    event.preventDefault();
    setCreated('');
    const body = requestFromValues(values);
    if ('error' in body) {
      setError({ message: body.error, field: body.field });
      return;
    }
    setBusy(true);
    setError({ message: '', field: null });
    try {
      setCreated(await onCreate(body));
      setValues(valuesFromConfig(config));
      setTouched(false);
    } catch (e) {
      setError({
        message: errorText(e),
        field: e instanceof ApiError ? e.field : null
      });
    } finally {
      setBusy(false);
    }
  };

  const input = (
    field: Field,
    label: string,
    options: { type?: string; placeholder?: string } = {}
  ): JSX.Element => (
    <div className="jp-InterLink-field">
      <label htmlFor={`interlink-new-${field}`}>{label}</label>
      <input
        id={`interlink-new-${field}`}
        data-testid={`interlink-new-${field}`}
        className={fieldClass(field, error.field)}
        type={options.type ?? 'text'}
        min={options.type === 'number' ? 0 : undefined}
        placeholder={options.placeholder}
        aria-invalid={error.field === field}
        value={values[field]}
        onChange={set(field)}
      />
    </div>
  );

  const nodeNames = (nodes ?? []).map(n => n.name);
  if (values.node && !nodeNames.includes(values.node)) {
    nodeNames.push(values.node);
  }

  return (
    <div className="jp-InterLink-new">
      <button
        type="button"
        className="jp-InterLink-button"
        aria-expanded={open}
        aria-controls="interlink-new-form"
        data-testid="interlink-new-toggle"
        onClick={() => setOpen(!open)}
      >
        {open ? '▾' : '▸'} New cluster
      </button>
      {open ? (
        <form
          id="interlink-new-form"
          className="jp-InterLink-form"
          onSubmit={e => void onSubmit(e)}
          aria-label="New Dask cluster"
        >
          {configError ? (
            <div className="jp-InterLink-hint">
              Defaults unavailable: {configError}
            </div>
          ) : null}
          {input('name', 'Name', { placeholder: 'generated' })}
          <div className="jp-InterLink-field">
            <label htmlFor="interlink-new-mode">Mode</label>
            <select
              id="interlink-new-mode"
              data-testid="interlink-new-mode"
              className={fieldClass('mode', error.field)}
              aria-invalid={error.field === 'mode'}
              value={values.mode}
              onChange={set('mode')}
            >
              <option value="kubernetes">kubernetes</option>
              <option value="direct">direct</option>
            </select>
          </div>
          {values.mode === 'direct' ? null : (
            <div className="jp-InterLink-field">
              <label htmlFor="interlink-new-node">Node</label>
              <select
                id="interlink-new-node"
                data-testid="interlink-new-node"
                className={fieldClass('node', error.field)}
                aria-invalid={error.field === 'node'}
                value={values.node}
                onChange={set('node')}
              >
                <option value="">any virtual node</option>
                {nodeNames.map(n => (
                  <option key={n} value={n}>
                    {n}
                  </option>
                ))}
              </select>
            </div>
          )}
          {input('image', 'Image', { placeholder: 'server default' })}
          {input('cpu', 'CPU', { placeholder: 'e.g. 2' })}
          {input('memory', 'Memory', { placeholder: 'e.g. 4Gi' })}
          {input('processes', 'Processes', { type: 'number' })}
          {input('workers', 'Workers', {
            type: 'number',
            placeholder:
              config?.max_workers !== null && config?.max_workers !== undefined
                ? `max ${config.max_workers}`
                : '0'
          })}
          {error.message ? (
            <div
              className="jp-InterLink-error"
              role="alert"
              data-testid="interlink-new-error"
            >
              {error.field ? <strong>{error.field}: </strong> : null}
              {error.message}
            </div>
          ) : null}
          {created ? (
            <div className="jp-InterLink-hint" role="status">
              Created {created}.
            </div>
          ) : null}
          <button
            type="submit"
            className="jp-InterLink-button jp-InterLink-primary"
            disabled={busy}
            data-testid="interlink-new-submit"
          >
            {busy ? 'Creating…' : 'Create'}
          </button>
        </form>
      ) : null}
    </div>
  );
}

function fieldClass(field: string, bad: string | null): string {
  return `jp-InterLink-input${field === bad ? ' jp-InterLink-invalid' : ''}`;
}
