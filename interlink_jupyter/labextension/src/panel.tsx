/**
 * The interLink sidebar panel (a ReactWidget over the store).
 *
 * Stable `data-testid`s for browser tests (`<name>`: cluster or node name,
 * `<pod>`: worker pod name, `<state>`: queued|starting|running|connected|finished):
 *
 *   interlink-connection              "live" / "reconnecting…" / "connecting…"
 *   interlink-refresh                 reconnect button
 *   interlink-problems                alert box (role="alert") with problems
 *   interlink-node-<name>             one virtual node
 *   interlink-node-ready-<name>       "Ready" / "NotReady" / "unknown"
 *   interlink-node-edge-<name>        edge connectivity text
 *   interlink-nodes-empty             shown when there are no virtual nodes
 *   interlink-edge-<url>              one direct-mode edge
 *   interlink-new-toggle              opens the "New cluster" form
 *   interlink-new-<field>             form inputs: name, mode, node, image, cpu,
 *                                     memory, processes, workers
 *   interlink-new-submit              create button
 *   interlink-new-error               error of the last create (role="alert")
 *   interlink-clusters-empty          shown when there are no clusters
 *   interlink-cluster-<name>          one cluster card
 *   interlink-bar-<name>              stacked bar (role="img", aria-label summary)
 *   interlink-count-<name>-<state>    count text (the number only)
 *   interlink-connected-<name>        connected worker processes text
 *   interlink-adapt-text-<name>       "Adaptive 0–10" / "Adaptive 2–∞" / "Manual"
 *   interlink-scale-input-<name>, interlink-scale-button-<name>
 *   interlink-adapt-min-<name>, interlink-adapt-max-<name>,
 *   interlink-adapt-button-<name>, interlink-adapt-stop-<name>
 *   interlink-workers-toggle-<name>   opens the worker table
 *   interlink-dashboard-<name>, interlink-insert-<name>, interlink-close-<name>
 *   interlink-error-<name>            error of the card's last action
 *   interlink-table-<name>            worker table
 *   interlink-row-<pod>               one worker row, with cells
 *   interlink-row-state-<pod>, interlink-row-reason-<pod>, interlink-row-job-<pod>
 *   interlink-logs-<pod>              "Logs" button of a row
 *   interlink-log-text                (log viewer) the log text
 *   interlink-log-follow, interlink-log-refresh  (log viewer) toolbar buttons
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import React, { useSyncExternalStore } from 'react';

import { InterLinkApi } from './api';
import { errorText } from './errors';
import { ClusterActions } from './components/actions';
import { Sidebar } from './components/Sidebar';
import { interlinkIcon } from './icon';
import { InterLinkStore } from './store';
import { ConfigAnswer } from './types';

export const SIDEBAR_ID = 'interlink-sidebar';

/** Actions the panel cannot do itself (dialogs, notebooks, main area). */
export interface PanelHooks {
  confirmClose(name: string): Promise<boolean>;
  insert(name: string): Promise<void>;
  openLogs(cluster: string, pod: string): void;
}

export class InterLinkPanel extends ReactWidget {
  constructor(
    readonly api: InterLinkApi,
    readonly store: InterLinkStore,
    hooks: PanelHooks
  ) {
    super();
    this.id = SIDEBAR_ID;
    this.title.icon = interlinkIcon;
    this.title.caption = 'interLink';
    this.addClass('jp-InterLink-sidebar');
    this._actions = {
      create: async request => {
        const detail = await api.createCluster(request);
        store.apply({ type: 'cluster', cluster: detail, rows: detail.rows });
        return detail.name;
      },
      scale: async (name, workers) => {
        store.apply({
          type: 'cluster',
          cluster: await api.scale(name, workers)
        });
      },
      adapt: async (name, minimum, maximum) => {
        store.apply({
          type: 'cluster',
          cluster: await api.adapt(name, minimum, maximum)
        });
      },
      stopAdapt: async name => {
        store.apply({ type: 'cluster', cluster: await api.stopAdapt(name) });
      },
      close: async name => {
        if (!(await hooks.confirmClose(name))) {
          return;
        }
        await api.deleteCluster(name);
        store.setRowsOpen(name, false);
        store.apply({ type: 'removed', name });
      },
      insert: name => hooks.insert(name),
      openLogs: (cluster, pod) => hooks.openLogs(cluster, pod),
      openDashboard: link => {
        window.open(link, '_blank', 'noopener');
      },
      toggleRows: (name, open) => store.setRowsOpen(name, open)
    };
    store.start();
    void this.loadConfig();
  }

  /** Reconnect the stream and reload the form defaults. */
  refresh(): void {
    this.store.refresh();
    void this.loadConfig();
  }

  async loadConfig(): Promise<void> {
    try {
      this._config = await this.api.getConfig();
      this._configError = '';
    } catch (error) {
      this._configError = errorText(error);
    }
    this.update();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.store.dispose();
    super.dispose();
  }

  protected render(): JSX.Element {
    return (
      <SidebarView
        store={this.store}
        config={this._config}
        configError={this._configError}
        actions={this._actions}
        onRefresh={() => this.refresh()}
      />
    );
  }

  private _config: ConfigAnswer | null = null;
  private _configError = '';
  private readonly _actions: ClusterActions;
}

/** Subscribes to the store: every change renders at once. */
function SidebarView(props: {
  store: InterLinkStore;
  config: ConfigAnswer | null;
  configError: string;
  actions: ClusterActions;
  onRefresh: () => void;
}): JSX.Element {
  const snapshot = useSyncExternalStore(
    props.store.subscribe,
    props.store.getSnapshot
  );
  return (
    <Sidebar
      snapshot={snapshot}
      config={props.config}
      configError={props.configError}
      actions={props.actions}
      onRefresh={props.onRefresh}
    />
  );
}
