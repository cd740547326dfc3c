/**
 * A binary min-heap of due times with lazy deletion: the engine keeps plan entries ordered by their next due
 * time so that a pass touches only what is due, never every job (issue 2/9, 100,000-job plans).
 */
export class DueHeap<K> {
  private items: { at: number; key: K }[] = [];

  get size(): number {
    return this.items.length;
  }

  push(at: number, key: K): void {
    const a = this.items;
    a.push({ at, key });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.at <= a[i]!.at) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }

  peek(): { at: number; key: K } | undefined {
    return this.items[0];
  }

  pop(): { at: number; key: K } | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.at < a[m]!.at) m = l;
        if (r < a.length && a[r]!.at < a[m]!.at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }

  clear(): void {
    this.items = [];
  }
}
