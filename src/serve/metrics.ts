// The server's counters in Prometheus' text exposition format (version 0.0.4): requests by
// adapter and status, a latency histogram and batch sizes per adapter, the queue depth.
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64];

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) this.counts[i]!++;
  }
  lines(name: string, labels: string): string[] {
    const out = this.buckets.map((b, i) => `${name}_bucket{${labels},le="${b}"} ${this.counts[i]}`);
    out.push(`${name}_bucket{${labels},le="+Inf"} ${this.count}`, `${name}_sum{${labels}} ${this.sum}`, `${name}_count{${labels}} ${this.count}`);
    return out;
  }
}

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export class Metrics {
  private readonly requests = new Map<string, number>();
  private readonly latency = new Map<string, Histogram>();
  private readonly batches = new Map<string, Histogram>();

  observe(adapter: string, status: number, seconds: number): void {
    const k = `${adapter}\u0000${status}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
    let h = this.latency.get(adapter);
    if (!h) this.latency.set(adapter, (h = new Histogram(LATENCY_BUCKETS)));
    h.observe(seconds);
  }

  batch(adapter: string, size: number): void {
    let h = this.batches.get(adapter);
    if (!h) this.batches.set(adapter, (h = new Histogram(BATCH_BUCKETS)));
    h.observe(size);
  }

  /** Drops an unloaded adapter's histograms (its request counts stay: counters only grow). */
  forget(adapter: string): void {
    this.latency.delete(adapter);
    this.batches.delete(adapter);
  }

  render(depth: number, laneDepths: [string, number][]): string {
    const out: string[] = [];
    out.push('# HELP graft_requests_total Prediction requests answered, by adapter and HTTP status.', '# TYPE graft_requests_total counter');
    for (const [k, v] of this.requests) {
      const [a, s] = k.split('\u0000');
      out.push(`graft_requests_total{adapter="${esc(a!)}",code="${s}"} ${v}`);
    }
    out.push('# HELP graft_request_duration_seconds Time from receiving a prediction request to its answer.', '# TYPE graft_request_duration_seconds histogram');
    for (const [a, h] of this.latency) out.push(...h.lines('graft_request_duration_seconds', `adapter="${esc(a)}"`));
    out.push('# HELP graft_batch_size Images per forward pass.', '# TYPE graft_batch_size histogram');
    for (const [a, h] of this.batches) out.push(...h.lines('graft_batch_size', `adapter="${esc(a)}"`));
    out.push('# HELP graft_queue_depth Prediction requests admitted and not yet answered.', '# TYPE graft_queue_depth gauge', `graft_queue_depth ${depth}`);
    out.push('# HELP graft_adapter_queue_depth Requests waiting for a batch, by adapter.', '# TYPE graft_adapter_queue_depth gauge');
    for (const [a, n] of laneDepths) out.push(`graft_adapter_queue_depth{adapter="${esc(a)}"} ${n}`);
    return out.join('\n') + '\n';
  }
}
