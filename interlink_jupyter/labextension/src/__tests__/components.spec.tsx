import { act, fireEvent, render, screen, within } from '@testing-library/react';
import React from 'react';

import { ClusterActions } from '../components/actions';
import { NodesSection } from '../components/NodesSection';
import { Sidebar } from '../components/Sidebar';
import { ClusterCard } from '../components/ClusterCard';
import { WorkerBar } from '../components/WorkerBar';
import { ApiError } from '../errors';
import { EMPTY_STATE } from '../model';
import { SidebarSnapshot } from '../store';
import { cluster, counts, node, row } from './fixtures';

const NOW = Date.parse('2026-11-30T10:02:30Z');

function actions(extra: Partial<ClusterActions> = {}): ClusterActions {
  return {
    create: jest.fn(async () => 'interlink-dask-ab12cd'),
    scale: jest.fn(async () => undefined),
    adapt: jest.fn(async () => undefined),
    stopAdapt: jest.fn(async () => undefined),
    close: jest.fn(async () => undefined),
    insert: jest.fn(async () => undefined),
    openLogs: jest.fn(),
    openDashboard: jest.fn(),
    toggleRows: jest.fn(),
    ...extra
  };
}

function snapshot(extra: Partial<SidebarSnapshot> = {}): SidebarSnapshot {
  return {
    state: { ...EMPTY_STATE, nodes: [], clusters: [] },
    status: 'live',
    connectionError: '',
    localProblems: [],
    openRows: [],
    ...extra
  };
}

describe('WorkerBar', () => {
  it('draws one segment per non-zero state, proportional to the counts', () => {
    render(
      <WorkerBar
        name="c1"
        counts={counts({ queued: 3, running: 1, connected: 4 })}
      />
    );
    const bar = screen.getByTestId('interlink-bar-c1');
    expect(bar.getAttribute('role')).toBe('img');
    expect(bar.getAttribute('aria-label')).toBe(
      '8 worker pods: 3 queued, 1 running, 4 connected'
    );
    const segments = Array.from(bar.children) as HTMLElement[];
    expect(segments.map(s => s.getAttribute('aria-label'))).toEqual([
      '3 queued',
      '1 running',
      '4 connected'
    ]);
    expect(segments.map(s => s.style.width)).toEqual(['37.5%', '12.5%', '50%']);
    expect(screen.getByTestId('interlink-count-c1-queued').textContent).toBe(
      '3'
    );
    expect(screen.getByTestId('interlink-count-c1-starting').textContent).toBe(
      '0'
    );
    expect(screen.getByTestId('interlink-count-c1-connected').textContent).toBe(
      '4'
    );
  });

  it('says so when there are no worker pods', () => {
    render(<WorkerBar name="c2" counts={counts()} />);
    const bar = screen.getByTestId('interlink-bar-c2');
    expect(bar.getAttribute('aria-label')).toBe('No worker pods');
    expect(bar.textContent).toBe('no worker pods');
    expect(bar.querySelectorAll('[data-state]')).toHaveLength(0);
  });
});

describe('NodesSection', () => {
  it('shows health, edge connectivity, resources, taints and pods', () => {
    render(
      <NodesSection
        now={NOW}
        edges={[]}
        nodes={[
          node('vk-slurm'),
          node('vk-condor', {
            ready: false,
            edge: { connected: false, message: 'edge timed out' }
          }),
          node('vk-new', {
            ready: null,
            edge: { connected: null, message: '' }
          })
        ]}
      />
    );
    expect(
      screen.getByTestId('interlink-node-ready-vk-slurm').textContent
    ).toBe('Ready');
    expect(
      screen.getByTestId('interlink-node-ready-vk-condor').textContent
    ).toBe('NotReady');
    expect(screen.getByTestId('interlink-node-ready-vk-new').textContent).toBe(
      'unknown'
    );
    const condorEdge = screen.getByTestId('interlink-node-edge-vk-condor');
    expect(condorEdge.textContent).toBe('edge not connected: edge timed out');
    expect(condorEdge.getAttribute('title')).toBe('edge timed out');
    const slurm = screen.getByTestId('interlink-node-vk-slurm');
    expect(slurm.textContent).toContain(
      'cpu 32 · mem 128Gi · pods 110 · gpu 4'
    );
    expect(slurm.textContent).toContain('cpu 30 · mem 120Gi · pods 100');
    expect(slurm.textContent).toContain('1 Pending · 3 Running');
    expect(slurm.textContent).toContain(
      'virtual-node.interlink/no-schedule=true:NoSchedule'
    );
    expect(slurm.textContent).toContain('Age24h');
  });

  it('explains an empty node list', () => {
    render(<NodesSection now={NOW} edges={[]} nodes={[]} />);
    expect(screen.getByTestId('interlink-nodes-empty').textContent).toContain(
      'No interLink virtual nodes in this cluster'
    );
  });
});

describe('NodesSection without Kubernetes', () => {
  it('says direct mode instead of "no virtual nodes", and skips empty resources', () => {
    render(
      <NodesSection
        now={NOW}
        nodes={[]}
        kubernetes={false}
        edges={[
          {
            url: 'http://edge:8080',
            ok: true,
            message: '',
            resources: { cpu: '2', accelerators: [] }
          }
        ]}
      />
    );
    expect(screen.getByTestId('interlink-nodes-empty').textContent).toBe(
      'No Kubernetes cluster is configured: clusters run in direct mode, on the edge below.'
    );
    const edge = screen.getByTestId('interlink-edge-http://edge:8080');
    expect(edge.textContent).toContain('cpu 2');
    expect(edge.textContent).not.toContain('accelerators');
  });
});

describe('NodesSection without Kubernetes or edge', () => {
  it('points at the problem above instead of an edge that is not there', () => {
    render(<NodesSection now={NOW} nodes={[]} kubernetes={false} edges={[]} />);
    expect(screen.getByTestId('interlink-nodes-empty').textContent).toBe(
      'No Kubernetes cluster is configured (see above).'
    );
  });
});

describe('Sidebar', () => {
  it('renders problems as an alert with message and hint', () => {
    render(
      <Sidebar
        now={NOW}
        snapshot={snapshot({
          state: {
            ...EMPTY_STATE,
            nodes: [],
            clusters: [],
            nodeProblems: [
              {
                source: 'kubernetes',
                message: 'you may not list nodes: forbidden',
                hint: 'ask your admin for the interlink-viewer role'
              }
            ]
          }
        })}
        config={null}
        configError=""
        actions={actions()}
        onRefresh={jest.fn()}
      />
    );
    const box = screen.getByTestId('interlink-problems');
    expect(box.getAttribute('role')).toBe('alert');
    expect(box.textContent).toBe(
      'kubernetes: you may not list nodes: forbiddenask your admin for the interlink-viewer role'
    );
    expect(screen.getByTestId('interlink-connection').textContent).toBe('live');
  });

  it('shows no problems box without problems, and "reconnecting…" when down', () => {
    render(
      <Sidebar
        now={NOW}
        snapshot={snapshot({ status: 'reconnecting' })}
        config={null}
        configError=""
        actions={actions()}
        onRefresh={jest.fn()}
      />
    );
    expect(screen.queryByTestId('interlink-problems')).toBeNull();
    expect(screen.getByTestId('interlink-connection').textContent).toBe(
      'reconnecting…'
    );
    expect(screen.getByTestId('interlink-clusters-empty')).toBeTruthy();
  });

  it('renders a cluster card with counts, adaptive text and controls', async () => {
    const acts = actions();
    const c = cluster('interlink-dask-ab12cd', {
      counts: counts({ queued: 2, connected: 1 }),
      pods: 3,
      workers: 1,
      adapt: { minimum: 0, maximum: 10 },
      dashboard_link: 'http://x/status',
      owner: 'other',
      error: 'scheduler unreachable'
    });
    render(
      <Sidebar
        now={NOW}
        snapshot={snapshot({
          state: {
            ...EMPTY_STATE,
            nodes: [],
            clusters: [c, cluster('manual')],
            rows: {
              'interlink-dask-ab12cd': [
                row('interlink-dask-ab12cd-w1', { reason: 'Resources' })
              ]
            }
          },
          openRows: ['interlink-dask-ab12cd']
        })}
        config={null}
        configError=""
        actions={acts}
        onRefresh={jest.fn()}
      />
    );
    const card = screen.getByTestId('interlink-cluster-interlink-dask-ab12cd');
    expect(
      screen.getByTestId('interlink-adapt-text-interlink-dask-ab12cd')
        .textContent
    ).toBe('Adaptive 0–10');
    expect(screen.getByTestId('interlink-adapt-text-manual').textContent).toBe(
      'Manual'
    );
    expect(screen.queryByTestId('interlink-adapt-stop-manual')).toBeNull();
    expect(screen.queryByTestId('interlink-dashboard-manual')).toBeNull();
    expect(within(card).getByRole('alert').textContent).toBe(
      'scheduler unreachable'
    );
    expect(card.textContent).toContain('owner: a kernel');
    expect(card.textContent).toContain('2m');
    expect(
      screen.getByTestId('interlink-row-state-interlink-dask-ab12cd-w1')
        .textContent
    ).toBe('queued');
    expect(
      screen.getByTestId('interlink-row-reason-interlink-dask-ab12cd-w1')
        .textContent
    ).toBe('Resources');

    fireEvent.change(screen.getByTestId('interlink-scale-input-manual'), {
      target: { value: '4' }
    });
    await act(async () => {
      fireEvent.click(screen.getByTestId('interlink-scale-button-manual'));
    });
    expect(acts.scale).toHaveBeenCalledWith('manual', 4);

    fireEvent.change(screen.getByTestId('interlink-adapt-max-manual'), {
      target: { value: '' }
    });
    await act(async () => {
      fireEvent.click(screen.getByTestId('interlink-adapt-button-manual'));
    });
    expect(acts.adapt).toHaveBeenCalledWith('manual', 0, null);

    fireEvent.click(
      screen.getByTestId('interlink-logs-interlink-dask-ab12cd-w1')
    );
    expect(acts.openLogs).toHaveBeenCalledWith(
      'interlink-dask-ab12cd',
      'interlink-dask-ab12cd-w1'
    );
    fireEvent.click(screen.getByTestId('interlink-workers-toggle-manual'));
    expect(acts.toggleRows).toHaveBeenCalledWith('manual', true);
  });

  it('shows the create error and marks the field at fault', async () => {
    const acts = actions({
      create: jest.fn(async () => {
        throw new ApiError('memory must be like 4Gi', 400, 'memory');
      })
    });
    render(
      <Sidebar
        now={NOW}
        snapshot={snapshot({
          state: { ...EMPTY_STATE, nodes: [node('vk-slurm')], clusters: [] }
        })}
        config={{
          defaults: {
            mode: 'direct',
            node: 'vk-slurm',
            image: 'img:1',
            cpu: 2
          },
          max_workers: 20
        }}
        configError=""
        actions={acts}
        onRefresh={jest.fn()}
      />
    );
    fireEvent.click(screen.getByTestId('interlink-new-toggle'));
    expect(
      (screen.getByTestId('interlink-new-mode') as HTMLSelectElement).value
    ).toBe('direct');
    // a node applies to Kubernetes mode only: no node field in direct mode
    expect(screen.queryByTestId('interlink-new-node')).toBeNull();
    fireEvent.change(screen.getByTestId('interlink-new-memory'), {
      target: { value: 'lots' }
    });
    fireEvent.change(screen.getByTestId('interlink-new-workers'), {
      target: { value: '3' }
    });
    fireEvent.click(screen.getByTestId('interlink-new-submit'));
    const error = await screen.findByTestId('interlink-new-error');
    expect(error.textContent).toBe('memory: memory must be like 4Gi');
    expect(acts.create).toHaveBeenCalledWith({
      mode: 'direct',
      image: 'img:1',
      memory: 'lots',
      cpu: 2,
      workers: 3
    });
    expect(
      screen.getByTestId('interlink-new-memory').getAttribute('aria-invalid')
    ).toBe('true');
    expect(
      screen.getByTestId('interlink-new-name').getAttribute('aria-invalid')
    ).toBe('false');
    fireEvent.change(screen.getByTestId('interlink-new-mode'), {
      target: { value: 'kubernetes' }
    });
    expect(
      (screen.getByTestId('interlink-new-node') as HTMLSelectElement).value
    ).toBe('vk-slurm');
  });
});

describe('ClusterCard inputs', () => {
  const card = (
    summary: ReturnType<typeof cluster>,
    acts: ClusterActions
  ): JSX.Element => (
    <ClusterCard
      cluster={summary}
      rows={undefined}
      rowsOpen={false}
      now={NOW}
      actions={acts}
    />
  );
  const value = (id: string): string =>
    (screen.getByTestId(id) as HTMLInputElement).value;

  it('follow the cluster until the user types, then keep the typed value until it is sent', async () => {
    const acts = actions();
    const { rerender } = render(card(cluster('c3'), acts));
    expect(value('interlink-scale-input-c3')).toBe('0');
    // scaled elsewhere (a notebook): two pods of two processes
    rerender(card(cluster('c3', { pods: 2, processes: 2 }), acts));
    expect(value('interlink-scale-input-c3')).toBe('4');
    rerender(
      card(cluster('c3', { pods: 2, adapt: { minimum: 1, maximum: 6 } }), acts)
    );
    expect(value('interlink-adapt-min-c3')).toBe('1');
    expect(value('interlink-adapt-max-c3')).toBe('6');

    fireEvent.change(screen.getByTestId('interlink-scale-input-c3'), {
      target: { value: '7' }
    });
    rerender(card(cluster('c3', { pods: 3 }), acts)); // a change does not erase typing
    expect(value('interlink-scale-input-c3')).toBe('7');
    await act(async () => {
      fireEvent.click(screen.getByTestId('interlink-scale-button-c3'));
    });
    expect(acts.scale).toHaveBeenCalledWith('c3', 7);
    rerender(card(cluster('c3', { pods: 5 }), acts)); // sent: following again
    expect(value('interlink-scale-input-c3')).toBe('5');
  });
});
