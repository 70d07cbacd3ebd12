"""filterbench.harness.nano"""
