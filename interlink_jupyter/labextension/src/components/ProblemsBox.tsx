import React from 'react';

import { Problem } from '../types';

/** The alert box listing what went wrong and what to do about it. */
export function ProblemsBox(props: {
  problems: Problem[];
}): JSX.Element | null {
  if (props.problems.length === 0) {
    return null;
  }
  return (
    <div
      className="jp-InterLink-problems"
      role="alert"
      data-testid="interlink-problems"
    >
      {props.problems.map((problem, i) => (
        <div className="jp-InterLink-problem" key={`${problem.source}-${i}`}>
          <div className="jp-InterLink-problemMessage">
            {problem.source ? (
              <span className="jp-InterLink-problemSource">
                {problem.source}:{' '}
              </span>
            ) : null}
            {problem.message}
          </div>
          {problem.hint ? (
            <div className="jp-InterLink-hint">{problem.hint}</div>
          ) : null}
        </div>
      ))}
    </div>
  );
}
