// Component entry module (componentize-js source): exports UserActivity over wit/.

import { exportPlugin } from '../../../guest-sdk/js/src/component.js';
import { UserActivity } from './user_activity.js';

export const { describe, compute } = exportPlugin(UserActivity);
