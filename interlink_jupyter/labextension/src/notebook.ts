/** Insert the code that connects to a cluster below the active notebook cell. */
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { clusterCode } from './format';

/** Raised when there is no notebook to insert into. */
export class NoNotebookError extends Error {
  constructor() {
    super('Open a notebook first: the code is inserted below its active cell.');
    this.name = 'NoNotebookError';
  }
}

/** Insert a code cell for cluster `name`; returns the notebook panel used. */
export function insertClusterCode(
  tracker: INotebookTracker | null,
  name: string
): string {
  const panel = tracker?.currentWidget ?? null;
  if (!panel || !panel.content.model) {
    throw new NoNotebookError();
  }
  const notebook = panel.content;
  NotebookActions.insertBelow(notebook);
  NotebookActions.changeCellType(notebook, 'code');
  const cell = notebook.activeCell;
  if (!cell) {
    throw new NoNotebookError();
  }
  cell.model.sharedModel.setSource(clusterCode(name));
  return panel.id;
}
