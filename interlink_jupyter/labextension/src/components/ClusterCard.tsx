import React, { useState } from 'react';

import { errorText } from '../errors';
import { adaptText, formatAge } from '../format';
import { ClusterSummary, WorkerRow } from '../types';
import { ClusterActions } from './actions';
import { WorkerBar } from './WorkerBar';
import { WorkerTable } from './WorkerTable';

/** One Dask cluster: state bar, counts, scaling controls and its worker table. */
export function ClusterCard(props: {
  cluster: ClusterSummary;
  rows: WorkerRow[] | undefined;
  rowsOpen: boolean;
  now: number;
  actions: ClusterActions;
}): JSX.Element {
  const { cluster, rows, rowsOpen, now, actions } = props;
  const name = cluster.name;
  // The inputs show the cluster as it is (worker processes asked for, adaptive bounds) and
  // follow it, until the user types: then they keep what was typed until it is submitted.
  const [workerDraft, setWorkers] = useState<string | null>(null);
  const [minimumDraft, setMinimum] = useState<string | null>(null);
  const [maximumDraft, setMaximum] = useState<string | null>(null);
  const workers =
    workerDraft ?? String(cluster.pods * Math.max(cluster.processes, 1));
  const minimum = minimumDraft ?? String(cluster.adapt?.minimum ?? 0);
  const maximum =
    maximumDraft ??
    (cluster.adapt?.maximum === null || cluster.adapt?.maximum === undefined
      ? ''
      : String(cluster.adapt.maximum));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  const run = async (action: () => Promise<void>): Promise<void> => {
    setBusy(true);
    setError('');
    try {
      await action();
      setWorkers(null);
      setMinimum(null);
      setMaximum(null);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const onScale = (event: React.FormEvent): void => {
    event.preventDefault();
    const n = parseCount(workers);
    if (n === null) {
      setError('Workers must be a whole number ≥ 0.');
      return;
    }
    void run(() => actions.scale(name, n));
  };

  const onAdapt = (event: React.FormEvent): void => {
    event.preventDefault();
    const min = parseCount(minimum);
    const max = maximum.trim() === '' ? null : parseCount(maximum);
    if (min === null || (maximum.trim() !== '' && max === null)) {
      setError(
        'Adapt bounds must be whole numbers ≥ 0 (maximum may be empty).'
      );
      return;
    }
    if (max !== null && max < min) {
      setError('The adaptive maximum must not be below the minimum.');
      return;
    }
    void run(() => actions.adapt(name, min, max));
  };

  const age = formatAge(cluster.created, now);
  const id = (what: string): string => `interlink-${what}-${name}`;

  return (
    <li
      className="jp-InterLink-cluster"
      data-testid={`interlink-cluster-${name}`}
    >
      <div className="jp-InterLink-row">
        <span className="jp-InterLink-name" title={name}>
          {name}
        </span>
        <span
          className={`jp-InterLink-modeBadge jp-InterLink-mode-${cluster.mode}`}
        >
          {cluster.mode}
        </span>
      </div>
      <div className="jp-InterLink-detail">
        <span title="Virtual node its workers go to">
          {cluster.mode === 'direct'
            ? 'straight to the edge'
            : (cluster.node ?? 'any virtual node')}
        </span>
        {' · '}
        <span>
          owner: {cluster.owner === 'server' ? 'this server' : 'a kernel'}
        </span>
        {age ? <span> · {age}</span> : null}
      </div>
      {cluster.error ? (
        <div className="jp-InterLink-error" role="alert">
          {cluster.error}
        </div>
      ) : null}
      <WorkerBar name={name} counts={cluster.counts} />
      <div className="jp-InterLink-detail">
        <span data-testid={`interlink-connected-${name}`}>
          {cluster.workers} worker process{cluster.workers === 1 ? '' : 'es'}{' '}
          connected
        </span>
        {cluster.processes > 1 ? ` (${cluster.processes} per pod)` : ''}
        {' · '}
        <span
          data-testid={`interlink-adapt-text-${name}`}
          title={
            cluster.adapt && cluster.adapt.maximum === null
              ? 'No upper bound except the server’s max_workers'
              : undefined
          }
        >
          {adaptText(cluster.adapt)}
        </span>
      </div>

      <form className="jp-InterLink-controls" onSubmit={onScale}>
        <label htmlFor={id('scale-input')}>Workers</label>
        <input
          id={id('scale-input')}
          data-testid={id('scale-input')}
          className="jp-InterLink-input jp-InterLink-number"
          type="number"
          min={0}
          step={1}
          value={workers}
          onChange={e => setWorkers(e.target.value)}
        />
        <button
          type="submit"
          className="jp-InterLink-button"
          disabled={busy}
          aria-label={`Scale ${name} to ${workers} workers`}
          data-testid={id('scale-button')}
        >
          Scale
        </button>
      </form>
      <form className="jp-InterLink-controls" onSubmit={onAdapt}>
        <label htmlFor={id('adapt-min')}>Min</label>
        <input
          id={id('adapt-min')}
          data-testid={id('adapt-min')}
          className="jp-InterLink-input jp-InterLink-number"
          type="number"
          min={0}
          step={1}
          value={minimum}
          onChange={e => setMinimum(e.target.value)}
        />
        <label htmlFor={id('adapt-max')}>Max</label>
        <input
          id={id('adapt-max')}
          data-testid={id('adapt-max')}
          className="jp-InterLink-input jp-InterLink-number"
          type="number"
          min={0}
          step={1}
          placeholder="∞"
          value={maximum}
          onChange={e => setMaximum(e.target.value)}
        />
        <button
          type="submit"
          className="jp-InterLink-button"
          disabled={busy}
          aria-label={`Adapt ${name} between ${minimum || 0} and ${
            maximum || 'no limit'
          } workers`}
          data-testid={id('adapt-button')}
        >
          Adapt
        </button>
        {cluster.adapt ? (
          <button
            type="button"
            className="jp-InterLink-button"
            disabled={busy}
            aria-label={`Stop adaptive scaling of ${name}`}
            data-testid={id('adapt-stop')}
            onClick={() => void run(() => actions.stopAdapt(name))}
          >
            Stop
          </button>
        ) : null}
      </form>
      <div className="jp-InterLink-controls">
        <button
          type="button"
          className="jp-InterLink-button"
          aria-expanded={rowsOpen}
          aria-label={`${rowsOpen ? 'Hide' : 'Show'} worker pods of ${name}`}
          data-testid={id('workers-toggle')}
          onClick={() => actions.toggleRows(name, !rowsOpen)}
        >
          {rowsOpen ? '▾' : '▸'} Workers
        </button>
        {cluster.dashboard_link ? (
          <button
            type="button"
            className="jp-InterLink-button"
            aria-label={`Open the Dask dashboard of ${name} in a new tab`}
            data-testid={id('dashboard')}
            onClick={() => actions.openDashboard(cluster.dashboard_link)}
          >
            Dashboard
          </button>
        ) : null}
        <button
          type="button"
          className="jp-InterLink-button"
          aria-label={`Insert code using ${name} in the active notebook`}
          data-testid={id('insert')}
          onClick={() => void run(() => actions.insert(name))}
        >
          Insert
        </button>
        <button
          type="button"
          className="jp-InterLink-button jp-InterLink-danger"
          disabled={busy}
          aria-label={`Close cluster ${name}`}
          data-testid={id('close')}
          onClick={() => void run(() => actions.close(name))}
        >
          Close
        </button>
      </div>
      {error ? (
        <div
          className="jp-InterLink-error"
          role="alert"
          data-testid={id('error')}
        >
          {error}
        </div>
      ) : null}
      {rowsOpen ? (
        <WorkerTable
          cluster={name}
          rows={rows}
          now={now}
          onLogs={pod => actions.openLogs(name, pod)}
        />
      ) : null}
    </li>
  );
}

/** A non-negative integer from an input's text, or null. */
export function parseCount(text: string): number | null {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) {
    return null;
  }
  return Number(trimmed);
}
