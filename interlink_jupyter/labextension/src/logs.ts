/**
 * The log viewer: a main-area widget showing one worker pod's log, with
 * "Follow" (streams the answer body as lines come) and "Refresh".
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { InterLinkApi } from './api';
import { errorText } from './errors';

const TAIL = 1000;

/** The text area of the viewer; owns the running request. */
export class LogView extends Widget {
  constructor(
    private readonly _api: InterLinkApi,
    readonly cluster: string,
    readonly pod: string
  ) {
    super();
    this.addClass('jp-InterLink-logView');
    this._pre = document.createElement('pre');
    this._pre.className = 'jp-InterLink-logText';
    this._pre.setAttribute('data-testid', 'interlink-log-text');
    this._pre.setAttribute('aria-label', `Log of ${pod}`);
    this._pre.tabIndex = 0;
    this._status = document.createElement('div');
    this._status.className = 'jp-InterLink-logStatus';
    this._status.setAttribute('role', 'status');
    this.node.append(this._status, this._pre);
  }

  get following(): boolean {
    return this._following;
  }

  /** Load the last lines (and keep reading them while following). */
  async load(): Promise<void> {
    this._abort?.abort();
    const abort = new AbortController();
    this._abort = abort;
    const follow = this._following;
    this._setStatus(follow ? 'following…' : 'loading…');
    try {
      const response = await this._api.logs(this.cluster, this.pod, {
        tail: TAIL,
        follow,
        signal: abort.signal
      });
      this._pre.textContent = '';
      if (!follow || !response.body) {
        this._append(await response.text());
        this._setStatus('');
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        this._append(decoder.decode(value, { stream: true }));
      }
      this._append(decoder.decode());
      if (this._abort === abort) {
        this._setStatus('the container ended; follow stopped');
        this.setFollow(false, false);
      }
    } catch (error) {
      if (!abort.signal.aborted) {
        this._setStatus(`cannot read the log: ${errorText(error)}`);
      }
    } finally {
      if (this._abort === abort && !this._following) {
        this._abort = null;
      }
    }
  }

  /** Turn following on (starts streaming) or off (stops it). */
  setFollow(follow: boolean, reload = true): void {
    this._following = follow;
    this.followChanged?.(follow);
    if (follow && reload) {
      void this.load();
    } else if (!follow) {
      this._abort?.abort();
      this._abort = null;
      if (this._status.textContent === 'following…') {
        this._setStatus('');
      }
    }
  }

  /** Called when following changes (the toolbar shows it). */
  followChanged: ((follow: boolean) => void) | null = null;

  dispose(): void {
    this._abort?.abort();
    this._abort = null;
    super.dispose();
  }

  private _append(text: string): void {
    if (!text) {
      return;
    }
    this._pre.append(document.createTextNode(text));
    // Keep the newest lines in view.
    this.node.scrollTop = this.node.scrollHeight;
  }

  private _setStatus(text: string): void {
    this._status.textContent = text;
    this._status.hidden = text === '';
  }

  private readonly _pre: HTMLPreElement;
  private readonly _status: HTMLDivElement;
  private _abort: AbortController | null = null;
  private _following = false;
}

/** A main-area widget around a `LogView`, with its toolbar. */
export function createLogWidget(
  api: InterLinkApi,
  cluster: string,
  pod: string
): MainAreaWidget<LogView> {
  const content = new LogView(api, cluster, pod);
  const widget = new MainAreaWidget({ content });
  widget.id = logWidgetId(cluster, pod);
  widget.title.label = `${pod} logs`;
  widget.title.caption = `Log of worker pod ${pod} (cluster ${cluster})`;
  widget.title.closable = true;
  widget.addClass('jp-InterLink-logWidget');

  const follow = new ToolbarButton({
    label: 'Follow',
    tooltip: 'Stream new lines as they come',
    pressed: false,
    onClick: () => content.setFollow(!content.following)
  });
  follow.node.setAttribute('data-testid', 'interlink-log-follow');
  content.followChanged = on => {
    follow.pressed = on;
  };
  const refresh = new ToolbarButton({
    label: 'Refresh',
    tooltip: 'Load the last lines again',
    onClick: () => void content.load()
  });
  refresh.node.setAttribute('data-testid', 'interlink-log-refresh');
  widget.toolbar.addItem('follow', follow);
  widget.toolbar.addItem('refresh', refresh);
  void content.load();
  return widget;
}

export function logWidgetId(cluster: string, pod: string): string {
  return `interlink-logs-${cluster}-${pod}`.replace(/[^A-Za-z0-9_-]/g, '_');
}
