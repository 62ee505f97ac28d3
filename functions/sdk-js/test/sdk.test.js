// The SDK's conversions, against the local host (`run`): what a handler
// returns or throws becomes the output or the error Eddy records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { handler, emit, log, output, run, ProcessorError, Retry } from '../index.js';

const text = (bytes) => new TextDecoder().decode(bytes);

test('JSON in, JSON out, emits and logs kept', async () => {
  const handle = handler((inv) => {
    const words = inv.json().text.split(/\s+/).filter(Boolean);
    log.info(`${words.length} words`);
    emit('next', { n: words.length });
    return { words: words.length };
  });
  const r = await run(handle, { text: 'a b c' });
  assert.deepEqual(r.json(), { words: 3 });
  assert.equal(r.output.contentType, 'application/json');
  assert.deepEqual(r.logs, [['info', '3 words']]);
  assert.equal(r.emits.length, 1);
  assert.equal(r.emits[0].function, 'next');
  assert.equal(text(r.emits[0].payload), '{"n":3}');
});

test('strings, bytes and explicit outputs keep their content types', async () => {
  assert.equal((await run(handler(() => 'hi'))).output.contentType, 'text/plain; charset=utf-8');
  const bytes = await run(handler(() => new Uint8Array([1, 2])));
  assert.equal(bytes.output.contentType, 'application/octet-stream');
  assert.deepEqual([...bytes.output.payload], [1, 2]);
  const csv = await run(handler(() => output('a,b\n', 'text/csv')));
  assert.equal(csv.output.contentType, 'text/csv');
  assert.equal(text(csv.output.payload), 'a,b\n');
  assert.equal(text((await run(handler(() => undefined))).output.payload), 'null');
});

test('an uncaught exception is a final `exception` error with its message and stack', async () => {
  const r = await run(handler(async () => {
    throw new TypeError('no such thing');
  }));
  assert.equal(r.output, null);
  assert.equal(r.error.code, 'exception');
  assert.equal(r.error.retryable, false);
  assert.match(r.error.message, /^TypeError: no such thing\n\n/);
  assert.match(r.error.message, /sdk\.test\.js/);
});

test('ProcessorError and Retry keep their code and retryability', async () => {
  const refused = await run(handler(() => {
    throw new ProcessorError('over-limit', 'too many rows');
  }));
  assert.deepEqual(refused.error, { code: 'over-limit', message: 'too many rows', retryable: false });
  const later = await run(handler(() => {
    throw new Retry('upstream answered 503');
  }));
  assert.deepEqual(later.error, { code: 'retry', message: 'upstream answered 503', retryable: true });
});

test('a payload that is not JSON is bad-input', async () => {
  const r = await run(handler((inv) => inv.json()), 'not json');
  assert.equal(r.error.code, 'bad-input');
  assert.match(r.error.message, /^the payload is not JSON: /);
});

test('something thrown that is not an Error is still reported', async () => {
  const r = await run(handler(() => {
    throw 42;
  }));
  assert.deepEqual(r.error, { code: 'exception', message: 'uncaught number: 42', retryable: false });
});

test('config arrives as an object', async () => {
  const r = await run(handler((inv) => inv.config), null, { config: { GREETING: 'hi' } });
  assert.deepEqual(r.json(), { GREETING: 'hi' });
});

test('the invocation says its tenant, version, deadline and trace context', async () => {
  const r = await run(handler((inv) => ({
    tenant: inv.tenant, version: inv.version, left: inv.timeLeftMs(),
    deadline: typeof inv.deadlineMs, traceparent: inv.traceparent,
  })), null, { timeoutMs: 5000 });
  const out = r.json();
  assert.deepEqual([out.tenant, out.version, out.deadline, out.traceparent], ['local', 0, 'number', null]);
  assert.ok(out.left > 4000 && out.left <= 5000, `${out.left}`);
});
