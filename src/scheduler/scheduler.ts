// The seam between the queue and delivery. For now every piece of work goes straight to the
// deliverer; grouping by domain and binding, limits and connection reuse belong here.
import type { Deliverer, DeliveryRequest, DeliveryResult } from '../delivery/deliverer.js';

export class Scheduler {
  constructor(private readonly deliverer: Deliverer) {}

  deliver(work: DeliveryRequest): Promise<DeliveryResult> {
    return this.deliverer.deliver(work);
  }
}
