/**
 * A binary min-heap of due times with lazy deletion: the engine keeps plan entries ordered by their next due
 * time so that a pass touches only what is due, never every job (issue 2/9, 100,000-job plans).
 */
export class DueHeap<K> {
  private items: { at: number; key: K }[] = [];

  get size(): number {
    return this.items.length;
  }

  // Sifting moves parents or children into the hole and writes the moving item once at the end: a
  // destructuring swap per level cost ~1.5 ms of the 10,000-due plan tick (plan-100k).
  push(at: number, key: K): void {
    const a = this.items;
    const item = { at, key };
    let i = a.length;
    a.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = a[p]!;
      if (parent.at <= at) break;
      a[i] = parent;
      i = p;
    }
    a[i] = item;
  }

  peek(): { at: number; key: K } | undefined {
    return this.items[0];
  }

  pop(): { at: number; key: K } | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    const n = a.length;
    if (n > 0 && last) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const m = r < n && a[r]!.at < a[l]!.at ? r : l;
        const child = a[m]!;
        if (child.at >= last.at) break;
        a[i] = child;
        i = m;
      }
      a[i] = last;
    }
    return top;
  }

  clear(): void {
    this.items = [];
  }
}
