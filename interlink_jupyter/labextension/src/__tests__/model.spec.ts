import {
  applyMessage,
  EMPTY_STATE,
  InterLinkState,
  parseMessage
} from '../model';
import { cluster, counts, node, row } from './fixtures';

describe('applyMessage', () => {
  const base: InterLinkState = {
    ...EMPTY_STATE,
    clusters: [cluster('a'), cluster('b')],
    rows: { a: [row('a-w1')], b: [row('b-w1')] }
  };

  it('replaces nodes, edges and node problems with a nodes snapshot', () => {
    const problem = { source: 'kubernetes', message: 'm', hint: 'h' };
    const next = applyMessage(
      { ...base, nodeProblems: [problem] },
      {
        type: 'nodes',
        nodes: [node('n1')],
        edges: [
          { url: 'https://edge', ok: true, message: '', resources: null }
        ],
        problems: []
      }
    );
    expect(next.nodes?.map(n => n.name)).toEqual(['n1']);
    expect(next.edges).toHaveLength(1);
    expect(next.nodeProblems).toEqual([]);
    expect(next.clusters).toBe(base.clusters);
  });

  it('replaces the cluster list and drops rows of clusters that are gone', () => {
    const next = applyMessage(base, {
      type: 'clusters',
      clusters: [cluster('b'), cluster('c')],
      problems: [{ source: 'clusters', message: 'x', hint: 'y' }]
    });
    expect(next.clusters?.map(c => c.name)).toEqual(['b', 'c']);
    expect(Object.keys(next.rows)).toEqual(['b']);
    expect(next.clusterProblems[0].message).toBe('x');
  });

  it('updates one cluster in place and keeps the others', () => {
    const changed = cluster('a', { counts: counts({ queued: 2 }), pods: 2 });
    const next = applyMessage(base, { type: 'cluster', cluster: changed });
    expect(next.clusters?.map(c => c.name)).toEqual(['a', 'b']);
    expect(next.clusters?.[0].counts.queued).toBe(2);
    expect(next.clusters?.[1]).toBe(base.clusters?.[1]);
    // No rows in the message: rows untouched.
    expect(next.rows.a).toBe(base.rows.a);
    expect(base.clusters?.[0].counts.queued).toBe(0);
  });

  it('stores rows when the cluster message carries them, adds new clusters', () => {
    const next = applyMessage(base, {
      type: 'cluster',
      cluster: cluster('c'),
      rows: [row('c-w1', { state: 'running' })]
    });
    expect(next.clusters?.map(c => c.name)).toEqual(['a', 'b', 'c']);
    expect(next.rows.c[0].state).toBe('running');
  });

  it('adds a cluster before any snapshot arrived', () => {
    const next = applyMessage(EMPTY_STATE, {
      type: 'cluster',
      cluster: cluster('x')
    });
    expect(next.clusters?.map(c => c.name)).toEqual(['x']);
  });

  it('deletes a removed cluster and its rows', () => {
    const next = applyMessage(base, { type: 'removed', name: 'a' });
    expect(next.clusters?.map(c => c.name)).toEqual(['b']);
    expect(next.rows).toEqual({ b: [row('b-w1')] });
  });
});

describe('parseMessage', () => {
  it('accepts known messages', () => {
    expect(parseMessage('{"type":"removed","name":"a"}')).toEqual({
      type: 'removed',
      name: 'a'
    });
  });

  it('rejects broken or unknown frames', () => {
    expect(parseMessage('not json')).toBeNull();
    expect(parseMessage('{"type":"hello"}')).toBeNull();
    expect(parseMessage('{"type":"nodes"}')).toBeNull();
    expect(parseMessage('[1]')).toBeNull();
  });
});
