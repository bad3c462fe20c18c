import { applyMessage, EMPTY_STATE, InterLinkState } from '../model';
import { ConnectionStatus, StreamClient } from '../stream';
import { FakeSocket, factory } from './fakesocket';
import { cluster, counts, node } from './fixtures';

const URL = 'ws://localhost:8888/interlink/api/stream?token=abc';

describe('StreamClient', () => {
  let client: StreamClient;
  let state: InterLinkState;
  let statuses: ConnectionStatus[];

  beforeEach(() => {
    jest.useFakeTimers();
    FakeSocket.all = [];
    state = EMPTY_STATE;
    statuses = [];
    client = new StreamClient({ url: URL, factory });
    client.onMessage(message => {
      state = applyMessage(state, message);
    });
    client.onStatus(status => statuses.push(status));
  });

  afterEach(() => {
    client.dispose();
    jest.useRealTimers();
  });

  it('connects to the URL and applies snapshot, cluster and removed messages', () => {
    client.start();
    expect(FakeSocket.all).toHaveLength(1);
    expect(FakeSocket.last.url).toBe(URL);
    FakeSocket.last.open();
    expect(client.status).toBe('live');
    FakeSocket.last.receive({
      type: 'nodes',
      nodes: [node('n1')],
      edges: [],
      problems: []
    });
    FakeSocket.last.receive({
      type: 'clusters',
      clusters: [cluster('a'), cluster('b')],
      problems: []
    });
    FakeSocket.last.receive({
      type: 'cluster',
      cluster: cluster('a', { counts: counts({ running: 3 }) })
    });
    FakeSocket.last.receive({ type: 'removed', name: 'b' });
    expect(state.nodes?.map(n => n.name)).toEqual(['n1']);
    expect(state.clusters?.map(c => c.name)).toEqual(['a']);
    expect(state.clusters?.[0].counts.running).toBe(3);
  });

  it('sends the rows subscription when open and on change', () => {
    client.setRows(['b', 'a', 'a']);
    client.start();
    FakeSocket.last.open();
    expect(FakeSocket.last.sent).toEqual([
      { type: 'rows', clusters: ['a', 'b'] }
    ]);
    client.setRows(['a']);
    expect(FakeSocket.last.sent).toEqual([
      { type: 'rows', clusters: ['a', 'b'] },
      { type: 'rows', clusters: ['a'] }
    ]);
    client.setRows(['a']); // unchanged: nothing sent
    client.setRows([]);
    expect(FakeSocket.last.sent).toHaveLength(3);
    expect(FakeSocket.last.sent[2]).toEqual({ type: 'rows', clusters: [] });
  });

  it('reconnects with back-off 0.5 s doubling to 5 s after the server goes away', () => {
    client.start();
    FakeSocket.last.open();
    FakeSocket.last.drop();
    expect(client.status).toBe('reconnecting');
    const delays = [500, 1000, 2000, 4000, 5000, 5000];
    for (const delay of delays) {
      const before = FakeSocket.all.length;
      jest.advanceTimersByTime(delay - 1);
      expect(FakeSocket.all.length).toBe(before);
      jest.advanceTimersByTime(1);
      expect(FakeSocket.all.length).toBe(before + 1);
      FakeSocket.last.drop(); // the server is still down
    }
    // The server is back: the next attempt succeeds and the delay resets.
    jest.advanceTimersByTime(5000);
    FakeSocket.last.open();
    expect(client.status).toBe('live');
    FakeSocket.last.drop();
    const before = FakeSocket.all.length;
    jest.advanceTimersByTime(500);
    expect(FakeSocket.all.length).toBe(before + 1);
  });

  it('re-sends the rows subscription after reconnecting and replaces the state', () => {
    client.start();
    FakeSocket.last.open();
    FakeSocket.last.receive({
      type: 'clusters',
      clusters: [cluster('old-1'), cluster('old-2')],
      problems: []
    });
    client.setRows(['old-1']);
    const first = FakeSocket.last;
    first.drop(1012); // server restart
    expect(statuses).toEqual(['live', 'reconnecting']);

    jest.advanceTimersByTime(500);
    const second = FakeSocket.last;
    expect(second).not.toBe(first);
    expect(second.sent).toEqual([]);
    second.open();
    expect(second.sent).toEqual([{ type: 'rows', clusters: ['old-1'] }]);
    second.receive({
      type: 'clusters',
      clusters: [cluster('new-1')],
      problems: []
    });
    expect(state.clusters?.map(c => c.name)).toEqual(['new-1']);
    // Frames from the old socket are ignored.
    first.receive({ type: 'removed', name: 'new-1' });
    expect(state.clusters?.map(c => c.name)).toEqual(['new-1']);
  });

  it('reports why the socket closed while reconnecting', () => {
    client.start();
    FakeSocket.last.drop(1006);
    expect(client.status).toBe('connecting');
    expect(client.lastError).toContain('code 1006');
  });

  it('stops reconnecting when disposed', () => {
    client.start();
    FakeSocket.last.open();
    FakeSocket.last.drop();
    client.dispose();
    expect(client.status).toBe('disposed');
    jest.advanceTimersByTime(60000);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('closes the socket on dispose and ignores late events', () => {
    client.start();
    const socket = FakeSocket.last;
    socket.open();
    client.dispose();
    expect(socket.closed).toBe(true);
    socket.receive({ type: 'removed', name: 'a' });
    jest.advanceTimersByTime(60000);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('reconnect() replaces the socket at once', () => {
    client.start();
    const first = FakeSocket.last;
    first.open();
    client.reconnect();
    expect(first.closed).toBe(true);
    expect(FakeSocket.all).toHaveLength(2);
    expect(client.status).toBe('reconnecting');
  });
});
