/** Pure helpers that turn contract values into the sidebar's words and shapes. */
import { AdaptBounds, NodeInfo, WORKER_STATES, WorkerState } from './types';

/** "5s", "2m", "3h", "4d" since `created` (RFC 3339); '' when unknown. */
export function formatAge(created: string | null, now: number): string {
  if (!created) {
    return '';
  }
  const then = Date.parse(created);
  if (Number.isNaN(then)) {
    return '';
  }
  const seconds = Math.max(0, Math.floor((now - then) / 1000));
  if (seconds < 60) {
    return `${seconds}s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes}m`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 48) {
    return `${hours}h`;
  }
  return `${Math.floor(hours / 24)}d`;
}

/** One segment of the stacked worker-state bar. */
export interface BarSegment {
  state: WorkerState;
  count: number;
  /** Share of all worker pods, in percent (0–100). */
  percent: number;
  /** "3 queued" */
  label: string;
}

/** Segments for the non-zero states, in state order; [] when there are no pods. */
export function barSegments(
  counts: Partial<Record<WorkerState, number>>
): BarSegment[] {
  const total = totalCount(counts);
  if (total === 0) {
    return [];
  }
  return WORKER_STATES.filter(state => (counts[state] ?? 0) > 0).map(state => {
    const count = counts[state] ?? 0;
    return {
      state,
      count,
      percent: (count / total) * 100,
      label: `${count} ${state}`
    };
  });
}

export function totalCount(
  counts: Partial<Record<WorkerState, number>>
): number {
  return WORKER_STATES.reduce((sum, state) => sum + (counts[state] ?? 0), 0);
}

/** The bar's accessible summary: "5 worker pods: 3 queued, 2 running". */
export function barSummary(
  counts: Partial<Record<WorkerState, number>>
): string {
  const total = totalCount(counts);
  if (total === 0) {
    return 'No worker pods';
  }
  const parts = barSegments(counts).map(segment => segment.label);
  return `${total} worker pod${total === 1 ? '' : 's'}: ${parts.join(', ')}`;
}

/** "Adaptive 0–10", "Adaptive 2–∞" (no upper bound) or "Manual". */
export function adaptText(adapt: AdaptBounds | null): string {
  if (!adapt) {
    return 'Manual';
  }
  const maximum = adapt.maximum === null ? '∞' : String(adapt.maximum);
  return `Adaptive ${adapt.minimum}–${maximum}`;
}

export type Health = 'Ready' | 'NotReady' | 'unknown';

export function nodeHealth(node: Pick<NodeInfo, 'ready'>): Health {
  if (node.ready === true) {
    return 'Ready';
  }
  if (node.ready === false) {
    return 'NotReady';
  }
  return 'unknown';
}

/** Resources shown for a node, in this order, when present. */
export const NODE_RESOURCES: readonly [string, string][] = [
  ['cpu', 'cpu'],
  ['memory', 'mem'],
  ['pods', 'pods'],
  ['nvidia.com/gpu', 'gpu']
];

/** "cpu 32 · mem 128Gi · pods 110 · gpu 4" for the known resources present. */
export function resourcesText(resources: Record<string, string>): string {
  const parts = NODE_RESOURCES.filter(([key]) => resources[key] !== undefined)
    .filter(([key]) => key !== 'nvidia.com/gpu' || resources[key] !== '0')
    .map(([key, label]) => `${label} ${resources[key]}`);
  return parts.length > 0 ? parts.join(' · ') : '—';
}

/** "3 Running · 1 Pending" for the non-zero phases, or "no pods". */
export function podPhasesText(pods: Record<string, number>): string {
  const order = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'];
  const keys = [
    ...order.filter(key => key in pods),
    ...Object.keys(pods).filter(key => !order.includes(key))
  ];
  const parts = keys
    .filter(key => (pods[key] ?? 0) > 0)
    .map(key => `${pods[key]} ${key}`);
  return parts.length > 0 ? parts.join(' · ') : 'no pods';
}

/** A compact one-line form of a direct-mode edge's resources. */
export function edgeResourcesText(
  resources: Record<string, unknown> | null
): string {
  if (!resources) {
    return '';
  }
  return Object.entries(resources)
    .filter(
      ([, value]) =>
        value !== null &&
        value !== '' &&
        !(Array.isArray(value) && value.length === 0)
    )
    .map(
      ([key, value]) =>
        `${key} ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`
    )
    .join(' · ');
}

/** The notebook cell "Insert in notebook" adds for a cluster. */
export function clusterCode(name: string): string {
  return [
    'from distributed import Client',
    'from interlink_dask import InterLinkCluster',
    '',
    `cluster = InterLinkCluster.from_name(${JSON.stringify(name)})`,
    'client = Client(cluster)',
    'cluster'
  ].join('\n');
}
