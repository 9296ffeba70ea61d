"""salclass.study"""
