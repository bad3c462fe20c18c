/**
 * The one WebSocket to the server extension's `stream` route: connects,
 * hands each parsed message to listeners, reconnects with back-off
 * (0.5 s doubling to 5 s) after the socket closes and re-sends the rows
 * subscription on every new connection. Framework-free: the socket factory
 * and the timer functions are injectable for tests.
 */
import { parseMessage } from './model';
import { RowsRequest, ServerMessage } from './types';

/** The part of the browser's WebSocket this client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: Event) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * `connecting`: first attempt; `live`: socket open; `reconnecting`: waiting
 * for or making a new attempt after a close; `disposed`: stopped for good.
 */
export type ConnectionStatus =
  'connecting' | 'live' | 'reconnecting' | 'disposed';

export interface StreamClientOptions {
  url: string;
  factory?: WebSocketFactory;
  timers?: Timers;
  /** First reconnect delay in ms (default 500). */
  minDelay?: number;
  /** Largest reconnect delay in ms (default 5000). */
  maxDelay?: number;
}

const OPEN = 1;

const defaultTimers: Timers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: handle =>
    globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>)
};

export class StreamClient {
  constructor(options: StreamClientOptions) {
    this._url = options.url;
    this._factory = options.factory ?? (url => new WebSocket(url));
    this._timers = options.timers ?? defaultTimers;
    this._minDelay = options.minDelay ?? 500;
    this._maxDelay = options.maxDelay ?? 5000;
    this._delay = this._minDelay;
  }

  get status(): ConnectionStatus {
    return this._status;
  }

  /** Why the last socket closed ('' while live or before any close). */
  get lastError(): string {
    return this._lastError;
  }

  /** The clusters whose rows are subscribed. */
  get rows(): readonly string[] {
    return this._rows;
  }

  get isDisposed(): boolean {
    return this._status === 'disposed';
  }

  /** Listen to messages; returns a function that removes the listener. */
  onMessage(listener: (message: ServerMessage) => void): () => void {
    this._messageListeners.add(listener);
    return () => this._messageListeners.delete(listener);
  }

  /** Listen to status changes; returns a function that removes the listener. */
  onStatus(listener: (status: ConnectionStatus) => void): () => void {
    this._statusListeners.add(listener);
    return () => this._statusListeners.delete(listener);
  }

  /** Open the socket (once; later calls do nothing while one is open). */
  start(): void {
    if (this.isDisposed || this._socket || this._timer !== null) {
      return;
    }
    this._connect();
  }

  /** Drop the current socket and connect again at once. */
  reconnect(): void {
    if (this.isDisposed) {
      return;
    }
    this._cancelTimer();
    this._dropSocket();
    this._delay = this._minDelay;
    this._setStatus(this._everOpen ? 'reconnecting' : 'connecting');
    this._connect();
  }

  /** Subscribe to the worker rows of these clusters (replaces the choice). */
  setRows(clusters: readonly string[]): void {
    const next = [...new Set(clusters)].sort();
    if (sameList(next, this._rows)) {
      return;
    }
    this._rows = next;
    this._sendRows();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._cancelTimer();
    this._dropSocket();
    this._setStatus('disposed');
    this._messageListeners.clear();
    this._statusListeners.clear();
  }

  private _connect(): void {
    let socket: WebSocketLike;
    try {
      socket = this._factory(this._url);
    } catch (error) {
      this._lastError = `cannot open ${this._url}: ${String(error)}`;
      this._schedule();
      return;
    }
    this._socket = socket;
    socket.onopen = () => {
      if (socket !== this._socket) {
        return;
      }
      this._everOpen = true;
      this._delay = this._minDelay;
      this._lastError = '';
      this._setStatus('live');
      if (this._rows.length > 0) {
        this._sendRows();
      }
    };
    socket.onmessage = event => {
      if (socket !== this._socket || typeof event.data !== 'string') {
        return;
      }
      const message = parseMessage(event.data);
      if (message === null) {
        console.warn('interLink stream: ignored message', event.data);
        return;
      }
      for (const listener of [...this._messageListeners]) {
        listener(message);
      }
    };
    socket.onclose = event => {
      if (socket !== this._socket) {
        return;
      }
      this._socket = null;
      this._lastError = `the live connection closed (code ${event.code}${
        event.reason ? `: ${event.reason}` : ''
      })`;
      this._schedule();
    };
    socket.onerror = () => {
      // A close event always follows; reconnecting is handled there.
    };
  }

  private _schedule(): void {
    if (this.isDisposed) {
      return;
    }
    // Notify even when the status stays the same: `lastError` changed.
    this._setStatus(this._everOpen ? 'reconnecting' : 'connecting', true);
    const delay = this._delay;
    this._delay = Math.min(this._delay * 2, this._maxDelay);
    this._timer = this._timers.setTimeout(() => {
      this._timer = null;
      this._connect();
    }, delay);
  }

  private _sendRows(): void {
    const socket = this._socket;
    if (socket && socket.readyState === OPEN) {
      const request: RowsRequest = { type: 'rows', clusters: [...this._rows] };
      socket.send(JSON.stringify(request));
    }
  }

  private _dropSocket(): void {
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      socket.onopen = null;
      socket.onclose = null;
      socket.onerror = null;
      socket.onmessage = null;
      try {
        socket.close();
      } catch {
        // Already closed.
      }
    }
  }

  private _cancelTimer(): void {
    if (this._timer !== null) {
      this._timers.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _setStatus(status: ConnectionStatus, always = false): void {
    if (status === this._status && !always) {
      return;
    }
    this._status = status;
    for (const listener of [...this._statusListeners]) {
      listener(status);
    }
  }

  private readonly _url: string;
  private readonly _factory: WebSocketFactory;
  private readonly _timers: Timers;
  private readonly _minDelay: number;
  private readonly _maxDelay: number;
  private _delay: number;
  private _socket: WebSocketLike | null = null;
  private _timer: unknown = null;
  private _everOpen = false;
  private _status: ConnectionStatus = 'connecting';
  private _lastError = '';
  private _rows: string[] = [];
  private readonly _messageListeners = new Set<
    (message: ServerMessage) => void
  >();
  private readonly _statusListeners = new Set<
    (status: ConnectionStatus) => void
  >();
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}
