import { ApiError } from '../errors';
import { InterLinkStore } from '../store';
import { StreamClient } from '../stream';
import { FakeSocket, factory } from './fakesocket';
import { cluster } from './fixtures';

function flush(): Promise<void> {
  return new Promise(resolve =>
    jest.requireActual('timers').setImmediate(resolve)
  );
}

describe('InterLinkStore', () => {
  beforeEach(() => {
    jest.useFakeTimers();
    FakeSocket.all = [];
  });
  afterEach(() => jest.useRealTimers());

  it('tells subscribers about every stream message', () => {
    const api = { getNodes: jest.fn(), getClusters: jest.fn() };
    const store = new InterLinkStore(
      new StreamClient({ url: 'ws://x', factory }),
      api
    );
    const seen: string[][] = [];
    store.subscribe(() =>
      seen.push((store.getSnapshot().state.clusters ?? []).map(c => c.name))
    );
    store.start();
    FakeSocket.last.open();
    FakeSocket.last.receive({
      type: 'clusters',
      clusters: [cluster('a')],
      problems: []
    });
    FakeSocket.last.receive({ type: 'cluster', cluster: cluster('b') });
    expect(seen).toEqual([[], ['a'], ['a', 'b']]);
    expect(store.getSnapshot().status).toBe('live');
    store.setRowsOpen('b', true);
    expect(FakeSocket.last.sent).toEqual([{ type: 'rows', clusters: ['b'] }]);
    expect(api.getNodes).not.toHaveBeenCalled();
    store.dispose();
  });

  it('explains a missing server extension when the stream never connects', async () => {
    const missing = new ApiError(
      'The interLink server extension does not answer (404).',
      404
    );
    const api = {
      getNodes: jest.fn(() => Promise.reject(missing)),
      getClusters: jest.fn(() => Promise.reject(missing))
    };
    const store = new InterLinkStore(
      new StreamClient({ url: 'ws://x', factory }),
      api
    );
    store.start();
    FakeSocket.last.drop(1006);
    await flush();
    const problems = store.getSnapshot().localProblems;
    expect(problems).toHaveLength(1);
    expect(problems[0].message).toBe(
      'interLink server extension: The interLink server extension does not answer (404).'
    );
    // Only one REST fallback however often the socket fails.
    jest.advanceTimersByTime(500);
    FakeSocket.last.drop(1006);
    await flush();
    expect(api.getNodes).toHaveBeenCalledTimes(1);
    // The stream comes up: the problem goes away.
    jest.advanceTimersByTime(1000);
    FakeSocket.last.open();
    expect(store.getSnapshot().localProblems).toEqual([]);
    store.dispose();
  });
});
