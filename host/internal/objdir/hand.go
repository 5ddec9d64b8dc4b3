package objdir

// hand queues j for the persist loop. After Close (which no caller should
// race, but a late Free or a refetch of a host shutting down may) the job
// is dropped, with the counts it took given back and a warning logged,
// rather than sent on the closed channel (which would crash the host).
func (d *Dir) hand(j persistJob) {
	d.handMu.RLock()
	if !d.handClosed {
		d.persistCh <- j
		d.handMu.RUnlock()
		return
	}
	d.handMu.RUnlock()
	d.mu.Lock()
	switch {
	case j.barrier != nil:
		close(j.barrier)
	case j.del:
		if d.deleting[j.id]--; d.deleting[j.id] <= 0 {
			delete(d.deleting, j.id)
		}
		d.deletedCond.Broadcast()
	case j.large != nil:
		d.queuedLarge -= int64(len(j.data))
	default:
		d.queued -= int64(len(j.data))
	}
	d.mu.Unlock()
	what := "a write"
	if j.del {
		what = "a delete"
	}
	d.log.Warn("the object directory is closed: "+what+" was not done", "object_id", j.id)
}
