// Module resolution hooks for native tests of component.js: resolve the
// component-only import `wafer:plugin/log@0.2.0` to a recording stub.
// Register with `module.register('<this file>', import.meta.url)`.

export async function resolve(specifier, context, next) {
  if (specifier === 'wafer:plugin/log@0.2.0') {
    return { url: new URL('./wit-log-stub.mjs', import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
