module stackpilot.dev/testbed/gitserver

go 1.26.0
