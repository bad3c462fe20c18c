import React from 'react';

import { formatAge } from '../format';
import { WorkerRow } from '../types';

/** The worker pods of one cluster, with a "Logs" button per pod. */
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
    <div className="jp-InterLink-tableWrap">
      <table
        className="jp-InterLink-table"
        data-testid={`interlink-table-${cluster}`}
      >
        <caption className="jp-InterLink-srOnly">
          Worker pods of {cluster}
        </caption>
        <thead>
          <tr>
            <th scope="col">Pod</th>
            <th scope="col">State</th>
            <th scope="col">Reason</th>
            <th scope="col">Job</th>
            <th scope="col">Node</th>
            <th scope="col">Age</th>
            <th scope="col" title="Restarts">
              ↻
            </th>
            <th scope="col">
              <span className="jp-InterLink-srOnly">Logs</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map(row => (
            <tr key={row.pod} data-testid={`interlink-row-${row.pod}`}>
              <td className="jp-InterLink-pod" title={row.pod}>
                {shortPod(row.pod, cluster)}
              </td>
              <td>
                <span
                  className={`jp-InterLink-badge jp-InterLink-state-${row.state}`}
                  data-testid={`interlink-row-state-${row.pod}`}
                >
                  {row.state}
                </span>
              </td>
              <td
                title={row.reason}
                data-testid={`interlink-row-reason-${row.pod}`}
              >
                {row.reason}
              </td>
              <td
                title={row.job_id}
                data-testid={`interlink-row-job-${row.pod}`}
              >
                {row.job_id}
              </td>
              <td title={row.node}>{row.node}</td>
              <td>{formatAge(row.created, now)}</td>
              <td>{row.restarts}</td>
              <td>
                <button
                  type="button"
                  className="jp-InterLink-button jp-InterLink-small"
                  aria-label={`Logs of ${row.pod}`}
                  data-testid={`interlink-logs-${row.pod}`}
                  onClick={() => onLogs(row.pod)}
                >
                  Logs
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The pod name without the cluster's prefix (the full name is the title). */
function shortPod(pod: string, cluster: string): string {
  return pod.startsWith(`${cluster}-`) && pod.length > cluster.length + 1
    ? pod.slice(cluster.length + 1)
    : pod;
}
