/**
 * Close reasons (RFC 6455 §5.5: a close frame's payload is at most 125 bytes, 2 of them the code, so a reason is at
 * most 123 bytes of UTF-8; `ws` throws on a longer one).
 *
 * A 4002 caused by one queued report names that report's sequence number at the start of the reason:
 * `[seq 17] run 7 is not dispatched to agent web2`. The agent charges that item (three rejections and it is moved to
 * its rejected.log and skipped) instead of the first one it has not seen acknowledged, which under protocol 3 (acks
 * trail commits) can be a good report that was committed, or merely not yet committed when the connection closed.
 * It is text in the reason, not a field or a frame: an agent of an earlier release shows it as part of the reason
 * and keeps its head rule (a frame of a type it does not know would itself be a protocol error to it), and an agent
 * talking to a server of an earlier release finds no prefix and falls back to the head rule. The prefix comes first
 * so that cutting a long reason to 123 bytes never cuts the number.
 *
 * A 4002 that is no queued item's fault (a sequence replay, an answer to a dispatch or kill that was not asked for or
 * came after its time-out, a frame out of place) starts with `[seq -] `: the agent then charges nothing. Without either
 * prefix (a server of an earlier release, or a frame this server could not read far enough to tell) the agent charges
 * its first unacknowledged item, as agents always did.
 */

export const MAX_CLOSE_REASON_BYTES = 123;

/** `text` cut to at most `max` bytes of UTF-8, on a character boundary. */
export function fitCloseReason(text: string, max = MAX_CLOSE_REASON_BYTES): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = '';
  let n = 0;
  for (const ch of text) {
    const b = Buffer.byteLength(ch);
    if (n + b > max) break;
    out += ch;
    n += b;
  }
  return out;
}

const SEQ_PREFIX = /^\[seq (\d{1,16})\] ?/;
const NO_ITEM_PREFIX = /^\[seq -\] ?/;

/**
 * The close reason for a protocol error: with `seq` when one queued report (that sequence number) caused it, with
 * `null` when the violation is known to be no queued item's fault (`[seq -] …`), unmarked when undefined.
 */
export function rejectionReason(reason: string, seq?: number | null): string {
  if (seq === null) return fitCloseReason(`[seq -] ${reason}`);
  const named = seq !== undefined && Number.isSafeInteger(seq) && seq > 0;
  return fitCloseReason(named ? `[seq ${seq}] ${reason}` : reason);
}

/**
 * Reads a 4002 close reason: `seq` is the sequence number of the report the server rejected, undefined when the
 * reason names none (a server of an earlier release, a violation that is no single report's fault) or names one
 * that is not a sequence number (garbage: 0, not an integer, beyond 2^53); `reason` is the text after the prefix.
 * `noItem` (present only when true): the reason starts with `[seq -]`, the violation is no queued item's fault.
 */
export function parseRejectionReason(text: string): { seq: number | undefined; reason: string; noItem?: true } {
  const none = NO_ITEM_PREFIX.exec(text);
  if (none) return { seq: undefined, reason: text.slice(none[0].length), noItem: true };
  const m = SEQ_PREFIX.exec(text);
  if (!m) return { seq: undefined, reason: text };
  const seq = Number(m[1]);
  if (!Number.isSafeInteger(seq) || seq <= 0) return { seq: undefined, reason: text };
  return { seq, reason: text.slice(m[0].length) };
}
