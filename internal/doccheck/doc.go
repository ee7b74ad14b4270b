// Package doccheck holds the tests that keep the repository's README.md true
// to the code it describes: its Layout table lists every package of the
// module, every path it names exists, and no package imports one of a
// higher layer than its own. The key schema table is checked by package
// keyspace's tests, next to the builders it describes.
package doccheck
