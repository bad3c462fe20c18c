/**
 * The types of the interLink Jupyter server extension's REST API and live stream,
 * as written in docs/jupyter-api.md (names kept as in the contract).
 */

/** A worker pod's state, in the order the sidebar shows them. */
export type WorkerState =
  'queued' | 'starting' | 'running' | 'connected' | 'finished';

export const WORKER_STATES: readonly WorkerState[] = [
  'queued',
  'starting',
  'running',
  'connected',
  'finished'
];

export interface Problem {
  source: string;
  message: string;
  hint: string;
}

export interface Taint {
  key: string;
  value?: string;
  effect: string;
}

export interface NodeInfo {
  name: string;
  ready: boolean | null;
  ready_message: string;
  edge: { connected: boolean | null; message: string };
  capacity: Record<string, string>;
  allocatable: Record<string, string>;
  taints: Taint[];
  pods: Record<string, number>;
  created: string | null;
}

export interface EdgeInfo {
  url: string;
  ok: boolean;
  message: string;
  resources: Record<string, unknown> | null;
}

export interface NodesAnswer {
  nodes: NodeInfo[];
  edges: EdgeInfo[];
  problems: Problem[];
  /** Whether a Kubernetes cluster is configured (false: direct mode only). */
  kubernetes?: boolean;
}

export type ClusterMode = 'kubernetes' | 'direct';

export interface AdaptBounds {
  minimum: number;
  maximum: number | null;
}

export interface ClusterSummary {
  name: string;
  mode: ClusterMode;
  namespace: string | null;
  node: string | null;
  owner: 'server' | 'other';
  counts: Record<WorkerState, number>;
  pods: number;
  workers: number;
  processes: number;
  adapt: AdaptBounds | null;
  dashboard_link: string;
  scheduler_address: string;
  created: string | null;
  error: string;
}

export interface WorkerRow {
  pod: string;
  state: WorkerState;
  reason: string;
  job_id: string;
  node: string;
  created: string | null;
  restarts: number;
}

export interface ClusterDetail extends ClusterSummary {
  rows: WorkerRow[];
}

export interface ClustersAnswer {
  clusters: ClusterSummary[];
  problems: Problem[];
}

/** `GET config`: defaults for the create form. */
export interface ConfigAnswer {
  defaults: {
    mode?: ClusterMode | null;
    node?: string | null;
    image?: string | null;
    cpu?: string | number | null;
    memory?: string | null;
    processes?: number | null;
  };
  max_workers: number | null;
}

/** `POST clusters` body: unset fields come from the user's dask config. */
export interface CreateClusterRequest {
  name?: string;
  mode?: ClusterMode;
  node?: string;
  image?: string;
  cpu?: string | number;
  memory?: string;
  processes?: number;
  workers?: number;
}

/** Server → browser stream messages. */
export type NodesMessage = { type: 'nodes' } & NodesAnswer;
export type ClustersMessage = { type: 'clusters' } & ClustersAnswer;
export interface ClusterMessage {
  type: 'cluster';
  cluster: ClusterSummary;
  rows?: WorkerRow[];
}
export interface RemovedMessage {
  type: 'removed';
  name: string;
}
export type ServerMessage =
  NodesMessage | ClustersMessage | ClusterMessage | RemovedMessage;

/** Browser → server stream messages. */
export interface RowsRequest {
  type: 'rows';
  clusters: string[];
}
