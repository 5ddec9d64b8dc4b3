package worker_test

import (
	"os"
	"testing"

	"github.com/rayhost/rayhost/internal/testutil/build"
)

// TestMain removes what the tests build (the rayhost binary, guests) when
// they end.
func TestMain(m *testing.M) { os.Exit(build.Main(m)) }
