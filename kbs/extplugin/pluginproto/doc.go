// Package pluginproto is the generated Go code of the KBS external plugin
// gRPC API (plugin.proto in this directory, upstream Trustee's
// protos/plugin.proto unchanged): the kbs.plugin.v1.KbsPlugin client the
// KBS calls and the server a plugin implements. Names and numbers are
// upstream's wire contract; change none of them.
//
// Regenerate with `go generate` (see gen.sh for the tool versions).
package pluginproto

//go:generate sh gen.sh
