import React from 'react';

import {
  edgeResourcesText,
  formatAge,
  nodeHealth,
  podPhasesText,
  resourcesText
} from '../format';
import { EdgeInfo, NodeInfo } from '../types';

/** "Virtual nodes": health, edge connectivity, resources, taints, pods. */
export function NodesSection(props: {
  nodes: NodeInfo[] | null;
  edges: EdgeInfo[];
  now: number;
  /** Whether a Kubernetes cluster is configured (false: direct mode only). */
  kubernetes?: boolean;
  /** The nodes cannot be loaded now (a problem says why). */
  unavailable?: boolean;
  /** Listing the nodes reported problems: an empty list may not be the truth. */
  problems?: boolean;
}): JSX.Element {
  const { nodes, edges, now, unavailable, problems, kubernetes } = props;
  return (
    <section
      className="jp-InterLink-section"
      aria-labelledby="interlink-nodes-h"
    >
      <h3 id="interlink-nodes-h" className="jp-InterLink-sectionTitle">
        Virtual nodes
      </h3>
      {nodes === null ? (
        <p className="jp-InterLink-muted">
          {unavailable ? 'Not available (see above).' : 'Loading…'}
        </p>
      ) : nodes.length === 0 && kubernetes === false ? (
        <p className="jp-InterLink-muted" data-testid="interlink-nodes-empty">
          {edges.length > 0
            ? 'No Kubernetes cluster is configured: clusters run in direct mode, on the edge below.'
            : 'No Kubernetes cluster is configured (see above).'}
        </p>
      ) : nodes.length === 0 && problems ? (
        <p className="jp-InterLink-muted" data-testid="interlink-nodes-empty">
          Virtual nodes cannot be listed (see above).
        </p>
      ) : nodes.length === 0 ? (
        <div className="jp-InterLink-empty" data-testid="interlink-nodes-empty">
          <p>No interLink virtual nodes in this cluster</p>
          <p className="jp-InterLink-hint">
            A node appears here once an interLink virtual kubelet registers (see{' '}
            <code>interlink doctor</code>).
            {edges.length > 0
              ? ' Direct-mode clusters can still use the edges below.'
              : ''}
          </p>
        </div>
      ) : (
        <ul className="jp-InterLink-list">
          {nodes.map(node => (
            <NodeRow key={node.name} node={node} now={now} />
          ))}
        </ul>
      )}
      {edges.length > 0 ? (
        <>
          <h4 className="jp-InterLink-subTitle">Edges (direct mode)</h4>
          <ul className="jp-InterLink-list">
            {edges.map(edge => (
              <EdgeRow key={edge.url} edge={edge} />
            ))}
          </ul>
        </>
      ) : null}
    </section>
  );
}

function NodeRow(props: { node: NodeInfo; now: number }): JSX.Element {
  const { node, now } = props;
  const health = nodeHealth(node);
  const edge = node.edge ?? { connected: null, message: '' };
  const edgeText =
    edge.connected === true
      ? 'edge connected'
      : edge.connected === false
        ? 'edge not connected'
        : 'edge unknown';
  const age = formatAge(node.created, now);
  return (
    <li
      className="jp-InterLink-node"
      data-testid={`interlink-node-${node.name}`}
    >
      <div className="jp-InterLink-row">
        <span className="jp-InterLink-name" title={node.name}>
          {node.name}
        </span>
        <span
          className={`jp-InterLink-health jp-InterLink-health-${health}`}
          title={node.ready_message || health}
        >
          <span className="jp-InterLink-dot" aria-hidden="true" />
          <span data-testid={`interlink-node-ready-${node.name}`}>
            {health}
          </span>
        </span>
      </div>
      <div
        className={`jp-InterLink-detail jp-InterLink-edge-${String(edge.connected)}`}
        title={edge.message || edgeText}
        data-testid={`interlink-node-edge-${node.name}`}
      >
        {edgeText}
        {edge.connected === false && edge.message ? `: ${edge.message}` : ''}
      </div>
      <dl className="jp-InterLink-facts">
        <dt>Capacity</dt>
        <dd>{resourcesText(node.capacity ?? {})}</dd>
        <dt>Allocatable</dt>
        <dd>{resourcesText(node.allocatable ?? {})}</dd>
        <dt>Pods</dt>
        <dd>{podPhasesText(node.pods ?? {})}</dd>
        {node.taints && node.taints.length > 0 ? (
          <>
            <dt>Taints</dt>
            <dd className="jp-InterLink-taints">
              {node.taints.map(taint => {
                const text = `${taint.key}${
                  taint.value ? `=${taint.value}` : ''
                }:${taint.effect}`;
                return (
                  <span key={text} className="jp-InterLink-chip" title={text}>
                    {text}
                  </span>
                );
              })}
            </dd>
          </>
        ) : null}
        {age ? (
          <>
            <dt>Age</dt>
            <dd>{age}</dd>
          </>
        ) : null}
      </dl>
    </li>
  );
}

function EdgeRow(props: { edge: EdgeInfo }): JSX.Element {
  const { edge } = props;
  const resources = edgeResourcesText(edge.resources);
  return (
    <li
      className="jp-InterLink-node"
      data-testid={`interlink-edge-${edge.url}`}
    >
      <div className="jp-InterLink-row">
        <span className="jp-InterLink-name" title={edge.url}>
          {edge.url}
        </span>
        <span
          className={`jp-InterLink-health jp-InterLink-health-${
            edge.ok ? 'Ready' : 'NotReady'
          }`}
          title={edge.message || (edge.ok ? 'ok' : 'not ok')}
        >
          <span className="jp-InterLink-dot" aria-hidden="true" />
          {edge.ok ? 'ok' : 'not ok'}
        </span>
      </div>
      {!edge.ok && edge.message ? (
        <div className="jp-InterLink-detail jp-InterLink-edge-false">
          {edge.message}
        </div>
      ) : null}
      {resources ? (
        <div className="jp-InterLink-detail">{resources}</div>
      ) : null}
    </li>
  );
}
