
#compdef avasam

_avasam_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _AVASAM_COMPLETE=complete_zsh avasam)
}

compdef _avasam_completion avasam

