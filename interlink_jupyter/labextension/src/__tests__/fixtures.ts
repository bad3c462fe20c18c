/** Hand-written contract values shared by the tests. */
import { ClusterSummary, NodeInfo, WorkerRow, WorkerState } from '../types';

export function counts(
  partial: Partial<Record<WorkerState, number>> = {}
): Record<WorkerState, number> {
  return {
    queued: 0,
    starting: 0,
    running: 0,
    connected: 0,
    finished: 0,
    ...partial
  };
}

export function cluster(
  name: string,
  extra: Partial<ClusterSummary> = {}
): ClusterSummary {
  return {
    name,
    mode: 'kubernetes',
    namespace: 'default',
    node: 'interlink-slurm',
    owner: 'server',
    counts: counts(),
    pods: 0,
    workers: 0,
    processes: 1,
    adapt: null,
    dashboard_link: '',
    scheduler_address: 'tcp://10.0.0.1:8786',
    created: '2026-11-30T10:00:00Z',
    error: '',
    ...extra
  };
}

export function node(name: string, extra: Partial<NodeInfo> = {}): NodeInfo {
  return {
    name,
    ready: true,
    ready_message: 'kubelet is ready',
    edge: { connected: true, message: 'ping ok' },
    capacity: {
      cpu: '32',
      memory: '128Gi',
      pods: '110',
      'nvidia.com/gpu': '4'
    },
    allocatable: { cpu: '30', memory: '120Gi', pods: '100' },
    taints: [
      {
        key: 'virtual-node.interlink/no-schedule',
        value: 'true',
        effect: 'NoSchedule'
      }
    ],
    pods: { Running: 3, Pending: 1, Succeeded: 0 },
    created: '2026-11-29T10:00:00Z',
    ...extra
  };
}

export function row(pod: string, extra: Partial<WorkerRow> = {}): WorkerRow {
  return {
    pod,
    state: 'queued',
    reason: 'Priority',
    job_id: '1234',
    node: 'interlink-slurm',
    created: '2026-11-30T10:00:00Z',
    restarts: 0,
    ...extra
  };
}
