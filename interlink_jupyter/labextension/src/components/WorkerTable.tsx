import React from 'react';

import { formatAge } from '../format';
import { WorkerRow } from '../types';

/** The worker pods of one cluster, two short lines each so that they fit a narrow sidebar:
 * the pod, its state and a "Logs" button; then its job id, node, age, restarts and the
 * batch system's reason. */
export function WorkerTable(props: {
  cluster: string;
  rows: WorkerRow[] | undefined;
  now: number;
  onLogs: (pod: string) => void;
}): JSX.Element {
  const { cluster, rows, now, onLogs } = props;
  if (rows === undefined) {
    return <p className="jp-InterLink-muted">Loading worker pods…</p>;
  }
  if (rows.length === 0) {
    return <p className="jp-InterLink-muted">No worker pods.</p>;
  }
  return (
    <ul
      className="jp-InterLink-workers"
      aria-label={`Worker pods of ${cluster}`}
      data-testid={`interlink-table-${cluster}`}
    >
      {rows.map(row => (
        <li
          key={row.pod}
          className="jp-InterLink-worker"
          data-testid={`interlink-row-${row.pod}`}
        >
          <div className="jp-InterLink-row">
            <span className="jp-InterLink-pod" title={row.pod}>
              {shortPod(row.pod, cluster)}
            </span>
            <span
              className={`jp-InterLink-badge jp-InterLink-state-${row.state}`}
              data-testid={`interlink-row-state-${row.pod}`}
            >
              {row.state}
            </span>
            <button
              type="button"
              className="jp-InterLink-button jp-InterLink-small"
              aria-label={`Logs of ${row.pod}`}
              data-testid={`interlink-logs-${row.pod}`}
              onClick={() => onLogs(row.pod)}
            >
              Logs
            </button>
          </div>
          <div className="jp-InterLink-workerMeta">
            <span title="Batch job id">
              job{' '}
              <span data-testid={`interlink-row-job-${row.pod}`}>
                {row.job_id || '–'}
              </span>
            </span>
            {row.node ? <span title="Node">{row.node}</span> : null}
            {row.created ? (
              <span title="Age">{formatAge(row.created, now)}</span>
            ) : null}
            {row.restarts ? (
              <span title="Restarts">↻ {row.restarts}</span>
            ) : null}
          </div>
          {row.reason ? (
            <div
              className="jp-InterLink-workerReason"
              title={row.reason}
              data-testid={`interlink-row-reason-${row.pod}`}
            >
              {row.reason}
            </div>
          ) : null}
        </li>
      ))}
    </ul>
  );
}

/** The pod name without the cluster's prefix (the full name is the title). */
function shortPod(pod: string, cluster: string): string {
  return pod.startsWith(`${cluster}-`) && pod.length > cluster.length + 1
    ? pod.slice(cluster.length + 1)
    : pod;
}
