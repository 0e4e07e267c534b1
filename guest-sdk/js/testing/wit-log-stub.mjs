// Stand-in for the WIT `log` import in native tests: records each call.

export const calls = [];

export function emit(level, message, fields) {
  calls.push([level, message, fields]);
}
