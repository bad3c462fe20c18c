/**
 * The sidebar's state and the pure reduction of stream messages into it.
 *
 * `nodes` and `clusters` messages are snapshots and replace their part of the
 * state; `cluster` updates (or adds) one cluster; `removed` deletes one.
 */
import {
  ClusterSummary,
  EdgeInfo,
  NodeInfo,
  Problem,
  ServerMessage,
  WorkerRow
} from './types';

export interface InterLinkState {
  /** Virtual nodes; `null` until the first snapshot arrived. */
  nodes: NodeInfo[] | null;
  edges: EdgeInfo[];
  nodeProblems: Problem[];
  /** Whether a Kubernetes cluster is configured (false: direct mode only). */
  kubernetes: boolean;
  /** Dask clusters; `null` until the first snapshot arrived. */
  clusters: ClusterSummary[] | null;
  clusterProblems: Problem[];
  /** Worker rows of the clusters whose table is open, by cluster name. */
  rows: Record<string, WorkerRow[]>;
}

export const EMPTY_STATE: InterLinkState = Object.freeze({
  nodes: null,
  edges: [],
  nodeProblems: [],
  kubernetes: true,
  clusters: null,
  clusterProblems: [],
  rows: {}
});

/** Return the state after `message`; the input is never modified. */
export function applyMessage(
  state: InterLinkState,
  message: ServerMessage
): InterLinkState {
  switch (message.type) {
    case 'nodes':
      return {
        ...state,
        nodes: message.nodes ?? [],
        edges: message.edges ?? [],
        nodeProblems: message.problems ?? [],
        kubernetes: message.kubernetes !== false
      };
    case 'clusters': {
      const clusters = message.clusters ?? [];
      const names = new Set(clusters.map(c => c.name));
      return {
        ...state,
        clusters,
        clusterProblems: message.problems ?? [],
        rows: pick(state.rows, names)
      };
    }
    case 'cluster': {
      const cluster = message.cluster;
      const list = state.clusters ?? [];
      const index = list.findIndex(c => c.name === cluster.name);
      const clusters =
        index < 0
          ? [...list, cluster]
          : list.map((c, i) => (i === index ? cluster : c));
      const rows =
        message.rows === undefined
          ? state.rows
          : { ...state.rows, [cluster.name]: message.rows };
      return { ...state, clusters, rows };
    }
    case 'removed': {
      const rest = { ...state.rows };
      delete rest[message.name];
      return {
        ...state,
        clusters: (state.clusters ?? []).filter(c => c.name !== message.name),
        rows: rest
      };
    }
    default:
      return state;
  }
}

/**
 * Parse one stream frame; `null` for anything that is not a known message
 * (a newer server may send types this browser does not know yet).
 */
export function parseMessage(data: string): ServerMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) {
    return null;
  }
  const message = value as { type?: unknown } & Record<string, unknown>;
  switch (message.type) {
    case 'nodes':
      return Array.isArray(message.nodes) ? (value as ServerMessage) : null;
    case 'clusters':
      return Array.isArray(message.clusters) ? (value as ServerMessage) : null;
    case 'cluster':
      return typeof message.cluster === 'object' && message.cluster !== null
        ? (value as ServerMessage)
        : null;
    case 'removed':
      return typeof message.name === 'string' ? (value as ServerMessage) : null;
    default:
      return null;
  }
}

function pick<T>(
  record: Record<string, T>,
  keys: Set<string>
): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [key, value] of Object.entries(record)) {
    if (keys.has(key)) {
      out[key] = value;
    }
  }
  return out;
}
