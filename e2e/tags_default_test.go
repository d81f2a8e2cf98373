//go:build !containers_image_openpgp

package e2e

// buildTags: see tags_openpgp_test.go.
const buildTags = ""
