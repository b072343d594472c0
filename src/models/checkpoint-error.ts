// The error every family's checkpoint loader throws when a checkpoint does not fit the model it
// is loaded into: another architecture, a naming scheme graft does not read, another head, or a
// buffer graft derives with other values than the checkpoint's.
import { WeightsError } from '../errors.js';

export class CheckpointFormatError extends WeightsError {
  override name = 'CheckpointFormatError';
}
