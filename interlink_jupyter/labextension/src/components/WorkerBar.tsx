import React from 'react';

import { barSegments, barSummary } from '../format';
import { WORKER_STATES, WorkerState } from '../types';

/**
 * The stacked bar of a cluster's worker pods per state, then the counts as
 * text (which double as the colour legend).
 */
export function WorkerBar(props: {
  name: string;
  counts: Record<WorkerState, number>;
}): JSX.Element {
  const { name, counts } = props;
  const segments = barSegments(counts);
  return (
    <div className="jp-InterLink-workers">
      <div
        className="jp-InterLink-bar"
        role="img"
        aria-label={barSummary(counts)}
        title={barSummary(counts)}
        data-testid={`interlink-bar-${name}`}
      >
        {segments.length === 0 ? (
          <span className="jp-InterLink-barEmpty">no worker pods</span>
        ) : (
          segments.map(segment => (
            <span
              key={segment.state}
              className={`jp-InterLink-barSegment jp-InterLink-state-${segment.state}`}
              style={{ width: `${segment.percent}%` }}
              title={segment.label}
              aria-label={segment.label}
              data-state={segment.state}
            />
          ))
        )}
      </div>
      <ul className="jp-InterLink-counts" aria-label="Worker pods per state">
        {WORKER_STATES.map(state => (
          <li key={state} className="jp-InterLink-count">
            <span
              className={`jp-InterLink-swatch jp-InterLink-state-${state}`}
              aria-hidden="true"
            />
            <span data-testid={`interlink-count-${name}-${state}`}>
              {counts[state] ?? 0}
            </span>{' '}
            {state}
          </li>
        ))}
      </ul>
    </div>
  );
}
