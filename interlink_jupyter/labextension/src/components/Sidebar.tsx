import React, { useEffect, useState } from 'react';

import { SidebarSnapshot } from '../store';
import { ConfigAnswer } from '../types';
import { ClusterActions } from './actions';
import { ClusterCard } from './ClusterCard';
import { NewClusterForm } from './NewClusterForm';
import { NodesSection } from './NodesSection';
import { ProblemsBox } from './ProblemsBox';

/** Re-render every `ms` so relative ages stay current (no data is fetched). */
export function useNow(ms = 5000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

/** The whole sidebar, drawn from one store snapshot. */
export function Sidebar(props: {
  snapshot: SidebarSnapshot;
  config: ConfigAnswer | null;
  configError: string;
  actions: ClusterActions;
  onRefresh: () => void;
  now?: number;
}): JSX.Element {
  const { snapshot, config, configError, actions, onRefresh } = props;
  const tick = useNow();
  const now = props.now ?? tick;
  const { state, status } = snapshot;
  const problems = [
    ...snapshot.localProblems,
    ...state.nodeProblems,
    ...state.clusterProblems
  ];
  const live = status === 'live';
  const statusText = live
    ? 'live'
    : status === 'connecting'
      ? 'connecting…'
      : status === 'disposed'
        ? 'stopped'
        : 'reconnecting…';
  const clusters = state.clusters;
  // Nothing will come until the problem above is solved: say so, not "Loading…".
  const unavailable = snapshot.localProblems.length > 0;

  return (
    <div className="jp-InterLink-panel">
      <header className="jp-InterLink-header">
        <h2 className="jp-InterLink-title">interLink</h2>
        <span
          className={`jp-InterLink-connection jp-InterLink-connection-${
            live ? 'live' : 'down'
          }`}
          role="status"
          title={snapshot.connectionError || statusText}
          data-testid="interlink-connection"
        >
          {statusText}
        </span>
        <button
          type="button"
          className="jp-InterLink-button jp-InterLink-small"
          aria-label="Reconnect and refresh"
          title="Reconnect and refresh"
          data-testid="interlink-refresh"
          onClick={onRefresh}
        >
          ↻
        </button>
      </header>
      <ProblemsBox problems={problems} />
      <NodesSection
        nodes={state.nodes}
        edges={state.edges}
        kubernetes={state.kubernetes}
        now={now}
        unavailable={unavailable}
        problems={state.nodeProblems.length > 0}
      />
      <section
        className="jp-InterLink-section"
        aria-labelledby="interlink-clusters-h"
      >
        <h3 id="interlink-clusters-h" className="jp-InterLink-sectionTitle">
          Dask clusters
        </h3>
        <NewClusterForm
          config={config}
          configError={configError}
          nodes={state.nodes}
          onCreate={actions.create}
        />
        {clusters === null ? (
          <p className="jp-InterLink-muted">
            {unavailable ? 'Not available (see above).' : 'Loading…'}
          </p>
        ) : clusters.length === 0 ? (
          <p
            className="jp-InterLink-muted"
            data-testid="interlink-clusters-empty"
          >
            No Dask clusters. Create one above or with{' '}
            <code>InterLinkCluster()</code> in a notebook.
          </p>
        ) : (
          <ul className="jp-InterLink-list">
            {clusters.map(cluster => (
              <ClusterCard
                key={cluster.name}
                cluster={cluster}
                rows={state.rows[cluster.name]}
                rowsOpen={snapshot.openRows.includes(cluster.name)}
                now={now}
                actions={actions}
              />
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
