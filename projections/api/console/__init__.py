"""The dispatcher console (调度台): server-rendered page shells plus small vanilla-JS modules over the JSON API."""
