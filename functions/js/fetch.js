// fetch.js: a JavaScript processor that fetches the URL its input names
// with the standard `fetch` and answers with the status and the body.
// Input: {"url": "..."}. A failed fetch is a non-retryable `fetch-failed`
// error naming the origin (not the path or query, which may carry tokens)
// and what JavaScript said.
export async function handle(invocation) {
  const input = JSON.parse(new TextDecoder().decode(invocation.payload));
  let status, body;
  try {
    const response = await fetch(input.url);
    status = response.status;
    body = await response.text();
  } catch (e) {
    throw { code: 'fetch-failed', message: `fetch ${new URL(input.url).origin}: ${e}`, retryable: false };
  }
  return {
    contentType: 'application/json',
    payload: new TextEncoder().encode(JSON.stringify({ status, body })),
  };
}
