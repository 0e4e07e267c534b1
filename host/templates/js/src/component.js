// Component entry module (componentize-js source): exports {{Type}} over wit/.

import { exportPlugin } from '../guest-sdk/js/src/component.js';
import { {{Type}} } from './{{module}}.js';

export const { describe, compute } = exportPlugin({{Type}});
