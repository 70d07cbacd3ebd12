"""filterbench.harness.cli"""
