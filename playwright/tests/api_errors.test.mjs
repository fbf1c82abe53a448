// Bad input to the edge gets a 4xx with a JSON `{ "error": "…" }` body, never a crash or a bare
// text answer.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EXPERIMENT, startNetwork } from '../lib/network.mjs';

/** Sends a request and returns { status, body } where body must be an ApiError. */
async function expectApiError(method, path, { body, status, statusRange = [400, 499] } = {}) {
  const res = await fetch(`${net.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  const where = `${method} ${path} → ${res.status} ${text.slice(0, 300)}`;
  if (status !== undefined) {
    assert.equal(res.status, status, where);
  } else {
    assert.ok(res.status >= statusRange[0] && res.status <= statusRange[1], `expected a 4xx: ${where}`);
  }
  assert.match(res.headers.get('content-type') ?? '', /json/, `expected a JSON answer: ${where}`);
  let json;
  assert.doesNotThrow(() => (json = JSON.parse(text)), `expected a JSON body: ${where}`);
  assert.equal(typeof json.error, 'string', `expected {error: string}: ${where}`);
  assert.ok(json.error.length > 0, `expected a non-empty error message: ${where}`);
  return json;
}

let net;

describe('edge API errors', { timeout: 300_000 }, () => {
  before(async () => {
    net = await startNetwork();
  }, { timeout: 180_000 });

  after(async () => {
    await net?.stop();
  }, { timeout: 60_000 });

  test('a lease request that is not JSON is a 4xx with a message', async () => {
    await expectApiError('POST', `/api/experiments/${EXPERIMENT}/leases`, { body: '{"holder": ' });
  });

  test('a lease request with the wrong shape is a 4xx with a message', async () => {
    await expectApiError('POST', `/api/experiments/${EXPERIMENT}/leases`, {
      body: JSON.stringify({ holder: 42, runtime: 'toaster' }),
    });
  });

  test('data of an unknown lease is a 404 with a message', async () => {
    await expectApiError('GET', `/api/leases/${'0'.repeat(64)}/data`, { status: 404 });
  });

  test('a blob id that is not hex is a 400 with a message', async () => {
    await expectApiError('GET', '/api/blobs/nothex', { status: 400 });
  });
});
