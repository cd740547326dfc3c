import { describe, expect, it } from 'vitest';
import {
  allocOutputBuffer, encode, encodeOutputFrame, outputBufferView, recycleOutputBuffer, generateAgentKey, MAX_BINARY_CHUNK_BYTES, MAX_FRAME_BYTES, parseAgentMessage, parseOutputFrame, parseServerMessage, publicKeyOf,
  signChallenge, verifyChallenge,
} from '../src/index.js';

const hello = {
  type: 'hello' as const, protocol: 1, agent: 'a1', version: '0.1.0', clock: 1, facts: { hostname: 'h' },
  capabilities: { command: true, shell: true, node: false, checks: { builtin: true, plugin: true, node: true } },
  queueId: 'abcdefgh-1234', activeRuns: [3], draining: false,
};

describe('protocol messages', () => {
  it('round-trips valid messages of both directions', () => {
    expect(parseAgentMessage(encode(hello))).toEqual({ ok: true, message: hello });
    const report = { type: 'report', seq: 4, item: { kind: 'output', runId: 1, attempt: 1, at: 2, stream: 'stderr', chunk: 1, data: 'aGk=' } } as const;
    expect(parseAgentMessage(JSON.stringify(report))).toEqual({ ok: true, message: report });
    expect(parseServerMessage('{"type":"ack","seq":9}')).toEqual({ ok: true, message: { type: 'ack', seq: 9 } });
  });

  it('protocol 3: the agent\'s durable watermark, a non-negative integer and nothing else', () => {
    expect(parseAgentMessage('{"type":"durable","seq":12}')).toEqual({ ok: true, message: { type: 'durable', seq: 12 } });
    expect(parseAgentMessage('{"seq":0,"type":"durable"}')).toEqual({ ok: true, message: { type: 'durable', seq: 0 } });
    for (const bad of ['{"type":"durable","seq":-1}', '{"type":"durable","seq":1.5}', '{"type":"durable","seq":"1"}', '{"type":"durable"}',
      '{"type":"durable","seq":1,"x":1}', '{"type":"durable","seq":1,"__proto__":{}}', `{"type":"durable","seq":${2 ** 53}}`]) {
      expect(parseAgentMessage(bad), bad).toMatchObject({ ok: false, error: { code: 'invalid' } });
    }
  });

  it('takes an ack by its quick path only in the exact shape the schema accepts', () => {
    expect(parseServerMessage('{"seq":0,"type":"ack"}')).toEqual({ ok: true, message: { type: 'ack', seq: 0 } });
    for (const bad of ['{"type":"ack","seq":-1}', '{"type":"ack","seq":1.5}', '{"type":"ack","seq":"1"}', '{"type":"ack"}', '{"type":"ack","seq":1,"x":1}',
      '{"type":"ack","seq":1,"__proto__":{}}', `{"type":"ack","seq":${2 ** 53}}`, '[]', 'null']) {
      expect(parseServerMessage(bad).ok, bad).toBe(false);
    }
  });

  it('never throws, and says what is wrong', () => {
    const inputs: (string | Buffer)[] = ['', '{', 'null', '[]', '1', '"x"', Buffer.from([0xff, 0xfe]), '{"type":"nope"}', '{"type":"report","seq":"1"}',
      JSON.stringify({ ...hello, extra: 1 }), JSON.stringify({ ...hello, agent: '../etc' }), JSON.stringify({ type: 'report', seq: 1, item: { kind: 'output', runId: 1, attempt: 1, at: 1, stream: 'stdout', chunk: 1, data: '!!' } })];
    for (const i of inputs) {
      const r = parseAgentMessage(i);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.message.length).toBeLessThanOrEqual(123);
    }
    expect(parseAgentMessage('{"type":"report","seq":"1"}')).toMatchObject({ ok: false, error: { code: 'invalid' } });
    expect(parseAgentMessage('{')).toMatchObject({ ok: false, error: { code: 'not-json', message: 'frame is not JSON' } });
    expect(parseAgentMessage('x'.repeat(MAX_FRAME_BYTES + 1))).toMatchObject({ ok: false, error: { code: 'too-large' } });
  });
});

describe('binary output frames (protocol 2)', () => {
  const header = { type: 'output' as const, seq: 5, runId: 1, attempt: 1, at: 2, stream: 'stdout' as const, chunk: 3 };

  it('round-trips the header and the raw bytes', () => {
    const data = Buffer.from([0, 255, 10, 13, 123]);
    expect(parseOutputFrame(encodeOutputFrame(header, data))).toEqual({ ok: true, message: { header, data } });
    const big = Buffer.alloc(MAX_BINARY_CHUNK_BYTES, 7);
    const r = parseOutputFrame(encodeOutputFrame(header, big));
    expect(r.ok && r.message.data.equals(big)).toBe(true);
  });

  it('writes the header into the room before a buffer from allocOutputBuffer (no copy of the bytes), once', () => {
    const data = allocOutputBuffer(10_000).fill(9); // beyond the size Buffer pools: its own memory
    const frame = encodeOutputFrame(header, data);
    expect(frame.buffer).toBe(data.buffer); // the same memory: the bytes were not copied
    expect(parseOutputFrame(frame)).toEqual({ ok: true, message: { header, data } });
    // A second frame of the same bytes (a re-send) is a copy: the first frame's header stays as it was.
    const again = encodeOutputFrame({ ...header, seq: 99 }, data);
    expect(again.buffer).not.toBe(data.buffer);
    expect(parseOutputFrame(frame)).toEqual({ ok: true, message: { header, data } });
    expect(parseOutputFrame(again)).toEqual({ ok: true, message: { header: { ...header, seq: 99 }, data } });
  });

  it('a view of the filled part of a buffer from allocOutputBuffer takes over its header room (once, for the view)', () => {
    const buf = allocOutputBuffer(16_384).fill(5);
    const view = outputBufferView(buf, 10_000);
    expect(view.buffer).toBe(buf.buffer);
    expect(view.length).toBe(10_000);
    const frame = encodeOutputFrame(header, view);
    expect(frame.buffer).toBe(view.buffer); // written in front of the bytes, not copied
    expect(frame.length).toBe(frame.readUInt32BE(0) + 4 + 10_000);
    expect(parseOutputFrame(frame)).toEqual({ ok: true, message: { header, data: view } });
    // The room is used: neither the view again nor the whole buffer may write a header there.
    expect(encodeOutputFrame({ ...header, seq: 2 }, view).buffer).not.toBe(buf.buffer);
    expect(encodeOutputFrame({ ...header, seq: 3 }, buf).buffer).not.toBe(buf.buffer);
    expect(parseOutputFrame(frame)).toEqual({ ok: true, message: { header, data: view } });
    // A view of a buffer without header room gets none.
    const plain = Buffer.alloc(8_192, 1);
    expect(encodeOutputFrame(header, outputBufferView(plain, 100)).buffer).not.toBe(plain.buffer);
  });

  it('reuses a recycled buffer of the pooled size (with its header room), and takes nothing else back', () => {
    const size = 12_345;
    const a = allocOutputBuffer(size).fill(1);
    encodeOutputFrame(header, a); // its header room used once
    recycleOutputBuffer(a, size);
    recycleOutputBuffer(a, size); // given back twice by mistake: still handed out once
    const b = allocOutputBuffer(size);
    expect(b).toBe(a);
    expect(allocOutputBuffer(size)).not.toBe(a);
    b.fill(2);
    const frame = encodeOutputFrame({ ...header, seq: 7 }, b);
    expect(frame.buffer).toBe(b.buffer); // its header room is usable again
    expect(parseOutputFrame(frame)).toEqual({ ok: true, message: { header: { ...header, seq: 7 }, data: b } });
    // Not whole buffers of allocOutputBuffer, or another size: never reused.
    const big = allocOutputBuffer(2 * size);
    recycleOutputBuffer(big.subarray(0, size), size);
    recycleOutputBuffer(Buffer.alloc(size), size);
    recycleOutputBuffer(allocOutputBuffer(size + 1), size);
    const fresh = allocOutputBuffer(size);
    expect(fresh.buffer).not.toBe(big.buffer);
    expect(fresh.byteOffset).toBe(a.byteOffset);
  });

  it('never throws on hostile frames, and says what is wrong', () => {
    const withHeader = (h: string, data = Buffer.alloc(1)) => {
      const hb = Buffer.from(h);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(hb.length);
      return Buffer.concat([len, hb, data]);
    };
    const lying = Buffer.alloc(8);
    lying.writeUInt32BE(0xffffffff);
    const cases: [Buffer, string][] = [
      [Buffer.alloc(0), 'invalid'], [Buffer.from([0, 0]), 'invalid'], [lying, 'invalid'],
      [withHeader('{'), 'not-json'], [withHeader('null'), 'invalid'], [withHeader(JSON.stringify({ ...header, extra: 1 })), 'invalid'],
      [withHeader(JSON.stringify({ ...header, type: 'report' })), 'invalid'], [withHeader(JSON.stringify({ ...header, seq: 0 })), 'invalid'],
      [withHeader(JSON.stringify(header), Buffer.alloc(MAX_BINARY_CHUNK_BYTES + 1)), 'invalid'],
      [Buffer.alloc(MAX_FRAME_BYTES + 1), 'too-large'],
    ];
    for (const [frame, code] of cases) {
      const r = parseOutputFrame(frame);
      expect(r).toMatchObject({ ok: false, error: { code } });
      if (!r.ok) expect(r.error.message.length).toBeLessThanOrEqual(123);
    }
  });
});

describe('agent keys', () => {
  it('proves possession of the key over a challenge without revealing it', () => {
    const { key, publicKey } = generateAgentKey();
    expect(key).toMatch(/^bza1\./);
    expect(publicKey).toMatch(/^ed25519:/);
    expect(publicKeyOf(key)).toBe(publicKey);
    const sig = signChallenge(key, 'nonce-1', 'a1', 1);
    expect(verifyChallenge(publicKey, sig, 'nonce-1', 'a1', 1)).toBe(true);
    expect(verifyChallenge(publicKey, sig, 'nonce-2', 'a1', 1)).toBe(false);
    expect(verifyChallenge(publicKey, sig, 'nonce-1', 'a2', 1)).toBe(false);
    expect(verifyChallenge(publicKey, sig, 'nonce-1', 'a1', 2)).toBe(false);
    expect(verifyChallenge(generateAgentKey().publicKey, sig, 'nonce-1', 'a1', 1)).toBe(false);
    expect(verifyChallenge('garbage', sig, 'nonce-1', 'a1', 1)).toBe(false);
    expect(verifyChallenge(publicKey, '', 'nonce-1', 'a1', 1)).toBe(false);
    expect(() => signChallenge('not-a-key', 'n', 'a1', 1)).toThrow(/not a batchalyzer agent key/);
  });
});
