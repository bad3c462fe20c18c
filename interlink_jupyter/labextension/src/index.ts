/** The interLink JupyterLab extension: sidebar, log viewer and commands. */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  MainAreaWidget,
  showDialog,
  showErrorMessage,
  WidgetTracker
} from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';

import { InterLinkApi, streamUrl } from './api';
import { errorText } from './errors';
import { interlinkIcon } from './icon';
import { createLogWidget, LogView } from './logs';
import { insertClusterCode } from './notebook';
import { InterLinkPanel, SIDEBAR_ID } from './panel';
import { InterLinkStore } from './store';
import { StreamClient } from './stream';

export namespace CommandIDs {
  export const open = 'interlink:open';
  export const refresh = 'interlink:refresh';
  export const insertClusterCode = 'interlink:insert-cluster-code';
}

const CATEGORY = 'interLink';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'interlink-jupyter:plugin',
  description:
    'A sidebar with interLink virtual nodes and Dask clusters offloaded to batch systems.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ) => {
    const settings = ServerConnection.makeSettings();
    const api = new InterLinkApi(settings);
    const store = new InterLinkStore(
      new StreamClient({ url: streamUrl(settings) }),
      api
    );
    const logs = new WidgetTracker<MainAreaWidget<LogView>>({
      namespace: 'interlink-logs'
    });

    const panel = new InterLinkPanel(api, store, {
      confirmClose: async name => {
        const result = await showDialog({
          title: 'Close Dask cluster?',
          body: `Close ${name}? Its worker pods and their batch jobs are deleted.`,
          buttons: [
            Dialog.cancelButton(),
            Dialog.warnButton({ label: 'Close cluster' })
          ]
        });
        return result.button.accept;
      },
      insert: name =>
        app.commands.execute(CommandIDs.insertClusterCode, {
          name
        }) as Promise<void>,
      openLogs: (cluster, pod) => {
        const existing = logs.find(
          w => w.content.cluster === cluster && w.content.pod === pod
        );
        if (existing) {
          app.shell.activateById(existing.id);
          return;
        }
        const widget = createLogWidget(api, cluster, pod);
        void logs.add(widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
      }
    });
    app.shell.add(panel, 'left', { rank: 300 });
    restorer?.add(panel, SIDEBAR_ID);

    app.commands.addCommand(CommandIDs.open, {
      label: 'Show interLink Sidebar',
      caption: 'Show the interLink sidebar (virtual nodes, Dask clusters)',
      icon: interlinkIcon,
      execute: () => app.shell.activateById(SIDEBAR_ID)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh interLink Sidebar',
      caption: 'Reconnect the interLink live updates',
      execute: () => panel.refresh()
    });
    app.commands.addCommand(CommandIDs.insertClusterCode, {
      label: args =>
        args.name
          ? `Insert Code for Dask Cluster ${String(args.name)}`
          : 'Insert Code for a Dask Cluster',
      caption: 'Insert code that connects to the cluster below the active cell',
      isEnabled: args => typeof args.name === 'string' && args.name !== '',
      execute: async args => {
        const name = typeof args.name === 'string' ? args.name : '';
        try {
          const id = insertClusterCode(notebooks, name);
          app.shell.activateById(id);
        } catch (error) {
          await showErrorMessage('Cannot insert code', errorText(error));
          throw error;
        }
      }
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.open, category: CATEGORY });
      palette.addItem({ command: CommandIDs.refresh, category: CATEGORY });
    }
  }
};

export default plugin;
