// Types of Eddy's JavaScript SDK (index.js).

/** One invocation. `id` is stable across retries: key side effects on it. */
export declare class Invocation {
  /** Unique id of this invocation (a UUIDv7). */
  readonly id: string;
  /** Id of the run (the root invocation's id). */
  readonly runId: string;
  /** Name of the function being invoked. */
  readonly function: string;
  /** 1 on the first delivery, 2 on the first retry, and so on. */
  readonly attempt: number;
  /** 0 for a run's root, parent depth + 1 for follow-ups. */
  readonly depth: number;
  /** MIME type of `payload`. */
  readonly contentType: string;
  readonly payload: Uint8Array;
  /** The function's configuration values (set at deploy time). */
  readonly config: Record<string, string>;
  /** The tenant that owns the function. */
  readonly tenant: string;
  /** The version of the function that runs (0 outside a deployment). */
  readonly version: number;
  /** When this attempt's time runs out, in ms since the Unix epoch. */
  readonly deadlineMs: number;
  /** The W3C trace context of the invocation's span, when it is traced. */
  readonly traceparent: string | null;
  /** Milliseconds until the deadline (the host stops the instance then). */
  timeLeftMs(): number;
  /** The payload as UTF-8 text; a `bad-input` error if it is not. */
  text(): string;
  /** The payload parsed as JSON; a `bad-input` error if it is not. */
  json<T = any>(): T;
}

/** A failure the processor reports: final unless `retryable`. */
export declare class ProcessorError extends Error {
  constructor(code: string, message: string, retryable?: boolean);
  readonly code: string;
  readonly retryable: boolean;
}

/** A failure worth another attempt (with backoff). */
export declare class Retry extends ProcessorError {
  constructor(message: string, code?: string);
}

/** An output with an explicit content type. */
export declare interface Output {
  readonly payload: Uint8Array;
  readonly contentType: string;
}
export declare function output(payload: Uint8Array | string, contentType?: string): Output;

/** JSON values, text, bytes or an explicit `Output`. */
export type Data = Output | Uint8Array | ArrayBuffer | string | number | boolean | null | object;

/** Queues a follow-up invocation of `fn` in this run (committed only if this invocation succeeds). */
export declare function emit(fn: string, data?: Data): void;

/** Lines in the invocation's log. */
export declare const log: {
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};

/** What the component exports: made by `handler`. */
export type Handle = (invocation: unknown) => Promise<unknown>;

/** Makes `fn` the processor's `handle`: `export const handle = handler(fn)`. */
export declare function handler(fn: (inv: Invocation) => Data | void | Promise<Data | void>): Handle;

/** Binds the SDK to the component's imports (done by `eddy build`). */
export declare function bind(imports: unknown): void;

export interface RunResult {
  output: Output | null;
  error: { code: string; message: string; retryable: boolean } | null;
  emits: { function: string; payload: Uint8Array; contentType: string }[];
  logs: [string, string][];
  /** The output parsed as JSON; throws if the processor failed. */
  json<T = any>(): T;
}

/** Runs `handle` once in this process, as Eddy would (for tests). */
export declare function run(
  handle: Handle,
  data?: Data,
  options?: { function?: string; config?: Record<string, string>; attempt?: number; timeoutMs?: number },
): Promise<RunResult>;
