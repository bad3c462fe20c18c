import { LabIcon } from '@jupyterlab/ui-components';

import interlinkSvg from '../style/icons/interlink.svg';

/** The sidebar tab's icon. */
export const interlinkIcon = new LabIcon({
  name: 'interlink-jupyter:interlink',
  svgstr: interlinkSvg
});
