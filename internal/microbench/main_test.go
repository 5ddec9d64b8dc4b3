package microbench

import (
	"os"
	"testing"

	"github.com/rayhost/rayhost/internal/testutil"
)

// TestMain removes the rayhost binary the tests build when they end.
func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }
