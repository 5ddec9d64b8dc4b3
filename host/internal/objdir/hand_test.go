package objdir

import (
	"errors"
	"testing"

	"github.com/rayhost/rayhost/internal/ids"
	"github.com/rayhost/rayhost/store"
)

// TestAfterCloseNoCrash: what a host shutting down may still do to its
// directory after Close — free objects, drop copies, seal a refetched
// value — neither crashes it (a send on the closed write-behind queue
// would) nor hangs: the store is left as Close left it, and a wait for the
// write-behind says the directory is closed.
func TestAfterCloseNoCrash(t *testing.T) {
	st := store.NewMemory()
	d := newDir(t, st, func(c *Config) { c.InlineLimit = 16 })
	ctx := ctxFor(t)
	small, large := ids.NewTaskID().Return(0), ids.NewTaskID().Return(0)
	if err := d.Seal(ctx, small, jsonValue("1")); err != nil {
		t.Fatal(err)
	}
	if err := d.Seal(ctx, large, rawValue(100, 'x')); err != nil {
		t.Fatal(err)
	}
	d.Close()
	stored := st.Len()
	d.Free([]ids.ObjectID{small, large})
	d.DropCopy(ctx, []ids.ObjectID{ids.NewTaskID().Return(0)})
	_ = d.Seal(ctx, ids.NewTaskID().Return(0), jsonValue("2"))
	_ = d.Seal(ctx, ids.NewTaskID().Return(0), rawValue(100, 'y'))
	if err := d.catchUp(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("catchUp after Close: %v, want ErrClosed", err)
	}
	if n := st.Len(); n != stored {
		t.Fatalf("the store holds %d objects after Close, %d at Close", n, stored)
	}
	d.Close() // twice: nothing
}
