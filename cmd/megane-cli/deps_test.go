package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLightDependencies: megane-cli (and the control protocol it speaks)
// must not link the Discord library, the fake Discord, miniredis or the
// processes it controls. They creep back in through one import of a heavy
// package, which nothing else would notice.
func TestLightDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the dependencies")
	}
	forbidden := []string{
		"github.com/disgoorg/disgo",
		"github.com/megane-go/megane/discordtest",
		"github.com/alicebob/miniredis",
		"github.com/megane-go/megane/launcher",
		"github.com/megane-go/megane/cluster",
	}
	for _, pkg := range []string{".", "github.com/megane-go/megane/control"} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
