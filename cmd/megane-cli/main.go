// Command megane-cli inspects and controls a Megane bot through its Redis.
//
//	megane-cli --redis redis://127.0.0.1:6379 status
//	megane-cli restart 2
//	megane-cli eval --target clusters 'len(shards)'
//
// Run megane-cli help for every command.
package main

import "github.com/megane-go/megane/cli"

func main() { cli.Main() }
