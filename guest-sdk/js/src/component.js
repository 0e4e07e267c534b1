// The component side of the SDK: only a plugin's component entry module
// imports this file, because `wafer:plugin/log@0.2.0` exists only inside a
// component built by componentize-js. The entry module is two lines:
//
//   import { exportPlugin } from '<path to>/guest-sdk/js/src/component.js';
//   export const { describe, compute } = exportPlugin(MyPlugin);

import { emit } from 'wafer:plugin/log@0.2.0';

import { computeColumns, PluginError, toWitDescriptor } from './glue.js';
import { setSink } from './log.js';

/**
 * The world's exports (`describe`, `compute`) for `plugin`: an object, or a
 * class to instantiate, with `describe()` returning a Descriptor and
 * `compute(row)` returning an array of feature values. Also routes the SDK's
 * log functions to the host's `log` import.
 */
export function exportPlugin(plugin) {
  const instance = typeof plugin === 'function' ? new plugin() : plugin;
  setSink(emit);
  const descriptor = instance.describe();
  const witDescriptor = toWitDescriptor(descriptor);
  return {
    describe() {
      return witDescriptor;
    },
    compute(batch) {
      try {
        return { tag: 'ok', val: computeColumns(instance, descriptor, batch) };
      } catch (e) {
        if (e instanceof PluginError) {
          return { tag: 'err', val: e.message };
        }
        return { tag: 'err', val: `internal error: ${e instanceof Error ? e.message : String(e)}` };
      }
    },
  };
}
