/**
 * The sidebar's store: owns the stream client, reduces its messages into the
 * state (model.ts) and tells subscribers (React's useSyncExternalStore) at
 * once. REST is used only as a one-time fallback while the stream has not
 * delivered anything, so the panel can say what is wrong instead of staying blank.
 */
import type { InterLinkApi } from './api';
import { ApiError, errorText } from './errors';
import { applyMessage, EMPTY_STATE, InterLinkState } from './model';
import { ConnectionStatus, StreamClient } from './stream';
import { Problem, ServerMessage } from './types';

export interface SidebarSnapshot {
  state: InterLinkState;
  status: ConnectionStatus;
  /** Why the stream is not live ('' when live). */
  connectionError: string;
  /** Problems seen by the browser itself (server extension unreachable ...). */
  localProblems: Problem[];
  /** Clusters whose worker table is open. */
  openRows: readonly string[];
}

/** The subset of the REST client the store needs (for tests). */
export type FallbackApi = Pick<InterLinkApi, 'getNodes' | 'getClusters'>;

export class InterLinkStore {
  constructor(
    private readonly _client: StreamClient,
    private readonly _api: FallbackApi
  ) {
    this._snapshot = {
      state: EMPTY_STATE,
      status: _client.status,
      connectionError: '',
      localProblems: [],
      openRows: []
    };
    this._unlisten.push(
      _client.onMessage(message => this.apply(message)),
      _client.onStatus(status => this._onStatus(status))
    );
  }

  /** For useSyncExternalStore: the same object until something changed. */
  getSnapshot = (): SidebarSnapshot => this._snapshot;

  subscribe = (listener: () => void): (() => void) => {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  };

  start(): void {
    this._client.start();
  }

  /** Reconnect the stream (its first messages replace the whole state). */
  refresh(): void {
    this._fallbackTried = false;
    this._update({ localProblems: [] });
    this._client.reconnect();
  }

  /** Apply a message from the stream or from an action's answer. */
  apply(message: ServerMessage): void {
    this._received = true;
    this._update({ state: applyMessage(this._snapshot.state, message) });
  }

  /** Open or close the worker table of a cluster (updates the subscription). */
  setRowsOpen(name: string, open: boolean): void {
    const current = new Set(this._snapshot.openRows);
    if (open) {
      current.add(name);
    } else {
      current.delete(name);
    }
    const openRows = [...current].sort();
    this._update({ openRows });
    this._client.setRows(openRows);
  }

  dispose(): void {
    for (const unlisten of this._unlisten) {
      unlisten();
    }
    this._client.dispose();
    this._listeners.clear();
  }

  private _onStatus(status: ConnectionStatus): void {
    const live = status === 'live';
    this._update({
      status,
      connectionError: live ? '' : this._client.lastError,
      localProblems: live ? [] : this._snapshot.localProblems
    });
    if (!live && status !== 'disposed' && !this._received) {
      void this._fallback();
    }
  }

  /** Once, while nothing came from the stream: fetch nodes and clusters by REST. */
  private async _fallback(): Promise<void> {
    if (this._fallbackTried) {
      return;
    }
    this._fallbackTried = true;
    const problems: Problem[] = [];
    const [nodes, clusters] = await Promise.allSettled([
      this._api.getNodes(),
      this._api.getClusters()
    ]);
    if (
      this._snapshot.status === 'live' ||
      this._snapshot.status === 'disposed'
    ) {
      return;
    }
    if (nodes.status === 'fulfilled') {
      this.apply({ type: 'nodes', ...nodes.value });
    }
    if (clusters.status === 'fulfilled') {
      this.apply({ type: 'clusters', ...clusters.value });
    }
    const failed = [nodes, clusters].find(r => r.status === 'rejected');
    if (failed && failed.status === 'rejected') {
      const error: unknown = failed.reason;
      problems.push({
        source: 'jupyter',
        message: `interLink server extension: ${errorText(error)}`,
        hint:
          error instanceof ApiError && error.status === 404
            ? 'Install interlink[jupyter] in the Jupyter server environment and restart the server.'
            : 'Check that the Jupyter server is running; the sidebar keeps retrying.'
      });
    } else {
      problems.push({
        source: 'jupyter',
        message: `Live updates are not available${
          this._client.lastError ? `: ${this._client.lastError}` : ''
        }.`,
        hint: 'Showing a snapshot; the sidebar keeps trying to reconnect.'
      });
    }
    this._update({ localProblems: problems });
  }

  private _update(patch: Partial<SidebarSnapshot>): void {
    this._snapshot = { ...this._snapshot, ...patch };
    for (const listener of [...this._listeners]) {
      listener();
    }
  }

  private _snapshot: SidebarSnapshot;
  private _received = false;
  private _fallbackTried = false;
  private readonly _listeners = new Set<() => void>();
  private readonly _unlisten: (() => void)[] = [];
}
