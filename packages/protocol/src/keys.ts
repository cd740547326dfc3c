import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';

/**
 * Agent keys (brief §8): an Ed25519 key pair. The agent holds the private key ("bza1." + base64url PKCS#8);
 * the server stores only the public key ("ed25519:" + base64 SPKI) and checks a signature over a fresh
 * challenge, so the key itself never travels.
 */
const KEY_PREFIX = 'bza1.';
const PUBLIC_PREFIX = 'ed25519:';

export interface AgentKeyPair {
  /** Secret: printed once at registration, kept in the agent's key file. */
  key: string;
  /** What the server stores. */
  publicKey: string;
}

export function generateAgentKey(): AgentKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    key: KEY_PREFIX + privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64url'),
    publicKey: PUBLIC_PREFIX + publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
  };
}

/** The public part of an agent key text; throws with a readable message when the text is not a key. */
export function publicKeyOf(key: string): string {
  const pk = createPublicKey(privateKeyObject(key));
  return PUBLIC_PREFIX + pk.export({ format: 'der', type: 'spki' }).toString('base64');
}

function privateKeyObject(key: string) {
  const t = key.trim();
  if (!t.startsWith(KEY_PREFIX)) throw new Error('not a batchalyzer agent key (it starts with "bza1."); use the key printed by `batchalyzer agent register`');
  try {
    return createPrivateKey({ key: Buffer.from(t.slice(KEY_PREFIX.length), 'base64url'), format: 'der', type: 'pkcs8' });
  } catch {
    throw new Error('the agent key is damaged; rotate it with `batchalyzer agent rotate-key NAME`');
  }
}

export function newNonce(): string {
  return randomBytes(32).toString('base64');
}

/** What is signed: binds the proof to this challenge, this agent name and this protocol version. */
function challengeText(nonce: string, agent: string, protocol: number): Buffer {
  return Buffer.from(`batchalyzer-agent-auth\n${protocol}\n${agent}\n${nonce}`);
}

export function signChallenge(key: string, nonce: string, agent: string, protocol: number): string {
  return sign(null, challengeText(nonce, agent, protocol), privateKeyObject(key)).toString('base64');
}

/** Never throws: a malformed stored key or signature is simply "not verified". */
export function verifyChallenge(storedPublicKey: string, signature: string, nonce: string, agent: string, protocol: number): boolean {
  if (!storedPublicKey.startsWith(PUBLIC_PREFIX)) return false;
  try {
    const pk = createPublicKey({ key: Buffer.from(storedPublicKey.slice(PUBLIC_PREFIX.length), 'base64'), format: 'der', type: 'spki' });
    return verify(null, challengeText(nonce, agent, protocol), pk, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}
