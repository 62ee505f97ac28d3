// Eddy's JavaScript SDK: write a processor as a plain (async) function.
//
//     import { handler, emit, log } from '@eddy/sdk';
//     export const handle = handler(async (inv) => {
//       const words = inv.json().text.split(/\s+/).filter(Boolean);
//       emit('count', { n: words.length });
//       return { words: words.length };
//     });
//
// What the function returns is the output: an object, array, number,
// boolean or null as JSON, a string as text, a Uint8Array as octet-stream,
// or `output(bytes, contentType)`. `throw new ProcessorError(code, message)`
// fails the invocation for good, `throw new Retry(message)` asks Eddy to try
// again later, and anything else thrown fails it for good as `exception` with
// its name, message and stack: a bug does not get better on retry.
//
// `eddy build` bundles the project with this module and binds it to the
// component's host (`bind`); in Node (tests, `run`) a local host keeps the
// emits and logs.

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
// Longest stack kept in an `exception` error (the host keeps 16 KiB of any
// message; the head, name and message, matters most).
const MAX_STACK = 8 << 10;

let host = null;
let local = null;

/** A failure the processor reports: final unless `retryable`. */
export class ProcessorError extends Error {
  constructor(code, message, retryable = false) {
    super(message);
    this.name = 'ProcessorError';
    this.code = code;
    this.retryable = retryable;
  }
}

/** A failure worth another attempt (with backoff), e.g. an upstream 503. */
export class Retry extends ProcessorError {
  constructor(message, code = 'retry') {
    super(code, message, true);
    this.name = 'Retry';
  }
}

/** An output with an explicit content type. */
export function output(payload, contentType = 'application/octet-stream') {
  return { [OUTPUT]: true, payload: typeof payload === 'string' ? encoder.encode(payload) : payload, contentType };
}
const OUTPUT = Symbol('eddy.output');

function encode(data) {
  if (data && data[OUTPUT]) return [data.payload, data.contentType];
  if (data instanceof Uint8Array) return [data, 'application/octet-stream'];
  if (data instanceof ArrayBuffer) return [new Uint8Array(data), 'application/octet-stream'];
  if (typeof data === 'string') return [encoder.encode(data), 'text/plain; charset=utf-8'];
  return [encoder.encode(JSON.stringify(data === undefined ? null : data)), 'application/json'];
}

/** One invocation. `id` is stable across retries: key side effects on it. */
export class Invocation {
  constructor(raw) {
    this.id = raw.id;
    this.runId = raw.runId;
    this.function = raw.function;
    this.attempt = raw.attempt;
    this.depth = raw.depth;
    this.contentType = raw.contentType;
    this.payload = raw.payload;
    this.config = Object.fromEntries(raw.config ?? []);
    this.tenant = raw.tenant ?? 'local';
    this.version = raw.version ?? 0;
    // A u64 in the WIT (a BigInt here); milliseconds fit a Number.
    this.deadlineMs = Number(raw.deadlineMs ?? 0);
    this.traceparent = raw.traceparent ?? null;
  }

  /** Milliseconds until the deadline (the host stops the instance then). */
  timeLeftMs() {
    return Math.max(0, this.deadlineMs - Date.now());
  }

  /** The payload as UTF-8 text (`bad-input` error if it is not). */
  text() {
    try {
      return decoder.decode(this.payload);
    } catch (e) {
      throw new ProcessorError('bad-input', `the payload is not UTF-8: ${e.message}`);
    }
  }

  /** The payload parsed as JSON (`bad-input` error if it is not). */
  json() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new ProcessorError('bad-input', `the payload is not JSON: ${e.message}`);
    }
  }
}

/**
 * Queues a follow-up invocation of `fn` in this run, committed only if this
 * invocation succeeds. `data` is encoded as an output is.
 */
export function emit(fn, data = null) {
  const [payload, contentType] = encode(data);
  if (host) host.emit(fn, payload, { contentType });
  else if (local) local.emits.push({ function: fn, payload, contentType });
  else throw new Error('emit outside an invocation');
}

function line(level, message) {
  const text = String(message);
  if (host) host.log(level, text);
  else if (local) local.logs.push([level, text]);
  else console.error(`${level}: ${text}`);
}

/** `log.info('...')`: a line in the invocation's log. */
export const log = {
  trace: (m) => line('trace', m),
  debug: (m) => line('debug', m),
  info: (m) => line('info', m),
  warn: (m) => line('warn', m),
  error: (m) => line('error', m),
};

function failure(e) {
  if (e instanceof ProcessorError) {
    return { code: String(e.code), message: String(e.message), retryable: Boolean(e.retryable) };
  }
  let message;
  if (e instanceof Error) {
    const head = `${e.name}: ${e.message}`;
    let stack = typeof e.stack === 'string' ? e.stack : '';
    if (stack.length > MAX_STACK) stack = `${stack.slice(0, MAX_STACK)}\n...`;
    message = stack ? `${head}\n\n${stack}` : head;
  } else {
    let shown;
    try {
      shown = JSON.stringify(e);
    } catch {
      shown = undefined;
    }
    message = `uncaught ${typeof e}: ${shown ?? String(e)}`;
  }
  return { code: 'exception', message, retryable: false };
}

async function call(fn, inv) {
  try {
    const [payload, contentType] = encode(await fn(inv));
    return { output: { payload, contentType }, error: null };
  } catch (e) {
    return { output: null, error: failure(e) };
  }
}

/** Makes `fn` the processor's `handle`: `export const handle = handler(fn)`. */
export function handler(fn) {
  return async (raw) => {
    const { output, error } = await call(fn, new Invocation(raw));
    if (error) throw error;
    return output;
  };
}

/** Binds the SDK to the component's imports (`eddy build`'s entry does). */
export function bind(imports) {
  host = imports;
}

/** Runs `handle` (made by `handler`) once in this process, as Eddy would, and returns what it did. */
export async function run(handle, data = null, { function: name = 'local', config = {}, attempt = 1, timeoutMs = 30000 } = {}) {
  const [payload, contentType] = encode(data);
  const raw = {
    id: 'local', runId: 'local', function: name, attempt, depth: 0, contentType, payload,
    config: Object.entries(config), tenant: 'local', version: 0,
    deadlineMs: BigInt(Math.floor(Date.now() + timeoutMs)),
  };
  local = { emits: [], logs: [] };
  try {
    let output = null;
    let error = null;
    try {
      output = await handle(raw);
    } catch (e) {
      error = e instanceof Error ? failure(e) : e;
    }
    return {
      output, error, emits: local.emits, logs: local.logs,
      json: () => {
        if (!output) throw new Error(`the processor failed: ${error.code}: ${error.message}`);
        return JSON.parse(decoder.decode(output.payload));
      },
    };
  } finally {
    local = null;
  }
}
