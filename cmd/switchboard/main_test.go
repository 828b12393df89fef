package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The binary refuses a production start without operator authentication,
// with one line naming the setting, and exit code 2.
func TestRefusesInsecureProduction(t *testing.T) {
	if os.Getenv("SWITCHBOARD_RUN_MAIN") == "1" {
		os.Exit(run(nil))
	}
	cmd := exec.Command(os.Args[0], "-test.run=TestRefusesInsecureProduction")
	cmd.Env = append(os.Environ(), "SWITCHBOARD_RUN_MAIN=1", "NODE_ENV=production", "CORS_ORIGIN=https://crm.example.com", "PORT=0")
	out, err := cmd.CombinedOutput()
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() != 2 {
		t.Fatalf("exit %v, output %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "SWITCHBOARD_JWT_SECRET") || !strings.Contains(lines[0], "SWITCHBOARD_INSECURE_OPERATORS") {
		t.Fatalf("want one line naming the settings, got:\n%s", out)
	}
}
