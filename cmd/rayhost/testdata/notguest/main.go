// Package main is a Go program that is not a rayhost guest: it does not
// use the SDK. `rayhost run` must say so.
package main

import "fmt"

func main() { fmt.Println("hello") }
